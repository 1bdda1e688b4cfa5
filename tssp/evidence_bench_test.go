package tssp

import (
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkEvidenceVerifyAuditV2 parses and verifies server-poisson
// evidence of a run of n train_steps (each proof checked against the
// signed checkpoint), the work of `tensafe package verify --audit-key`.
func BenchmarkEvidenceVerifyAuditV2(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("train_steps=%d", n), func(b *testing.B) {
			entries := []evEntry{{op: "training.create_client", proven: true}}
			for i := range n {
				entries = append(entries, trainStepEntry(i%10, "4", testDatasetHash))
			}
			tmpl := serverTemplate()
			tmpl.Training.OptimSteps, tmpl.Training.TrainSteps, tmpl.Training.Examples, tmpl.Dataset.Batches = int64(n), int64(n), int64(4*n), int64(n)
			ev, key := buildEvidence(b, tmpl, entries)
			raw, err := json.Marshal(ev)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(raw)))
			b.ResetTimer()
			for b.Loop() {
				e, err := ParseEvidence(raw)
				if err != nil {
					b.Fatal(err)
				}
				if err := e.VerifyAudit(key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
