package api

import (
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/he"
	"gopkg.in/yaml.v3"
)

// TestOpenAPISchemas: every schema of openapi.yaml names exactly the JSON
// fields of its Go type.
func TestOpenAPISchemas(t *testing.T) {
	data, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI    string                    `yaml:"openapi"`
		Paths      map[string]map[string]any `yaml:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `yaml:"properties"`
				Required   []string       `yaml:"required"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	types := map[string]any{
		"HERegisterKeysRequest": he.RegisterKeysRequest{}, "HERegisterKeysResponse": he.RegisterKeysResponse{}, "HEKeyInfo": he.KeyInfo{}, "HECapabilities": he.Capabilities{}, "HELoRAShape": he.LoRAShape{}, "HERegisterAdapterRequest": he.RegisterAdapterRequest{}, "HEAdapterSource": he.AdapterSource{}, "HEAdapterInfo": he.AdapterInfo{}, "HEModelEntry": he.ModelEntry{}, "HERegisterAdapterResponse": he.RegisterAdapterResponse{}, "HEDeltaRequest": he.DeltaRequest{}, "HEDeltaResponse": he.DeltaResponse{}, "HEBundle": he.Bundle{}, "HELayout": he.Layout{}, "HERegisterModelRequest": he.RegisterModelRequest{}, "HERegisterModelResponse": he.RegisterModelResponse{}, "HEMLP": he.MLP{}, "HELayer": he.Layer{}, "HEActivation": he.Activation{}, "HEModelInfo": he.ModelInfo{}, "HEInferenceRequest": he.InferenceRequest{}, "HEInferenceResponse": he.InferenceResponse{},
		"TrainingConfig": TrainingConfig{}, "LoRAConfig": LoRAConfig{}, "DPConfig": DPConfig{},
		"OptimizerConfig": OptimizerConfig{}, "LossSpec": LossSpec{}, "Batch": Batch{},
		"ForwardBackwardRequest": ForwardBackwardRequest{}, "ForwardRequest": ForwardRequest{},
		"OptimStepRequest": OptimStepRequest{}, "SampleRequest": SampleRequest{},
		"SaveStateRequest": SaveStateRequest{}, "LoadStateRequest": LoadStateRequest{},
		"TrainingClient": TrainingClient{}, "Future": Future{}, "ForwardBackwardResult": ForwardBackwardResult{},
		"ForwardResult": ForwardResult{}, "OptimStepResult": OptimStepResult{}, "Sequence": Sequence{},
		"SampleResult": SampleResult{}, "SaveStateResult": SaveStateResult{}, "LoadStateResult": LoadStateResult{},
		"DPMetrics": DPMetrics{}, "Artifact": Artifact{}, "ErrorResponse": ErrorResponse{}, "ErrorBody": ErrorBody{},
		"TokenizeRequest": TokenizeRequest{}, "TokenizeResult": TokenizeResult{},
		"DetokenizeRequest": DetokenizeRequest{}, "DetokenizeResult": DetokenizeResult{},
		"ForwardBackwardCustomRequest": ForwardBackwardCustomRequest{},

		"DatasetExample": DatasetExample{}, "CreateDatasetRequest": CreateDatasetRequest{}, "Dataset": Dataset{},
		"TrainStepRequest": TrainStepRequest{}, "TrainStepResult": TrainStepResult{},

		"ComplianceMetrics": ComplianceMetrics{}, "AuthenticationMetric": AuthenticationMetric{}, "AuthorizationMetric": AuthorizationMetric{},
		"EncryptionMetric": EncryptionMetric{}, "ArtifactCheckFailure": ArtifactCheckFailure{}, "AuditLogMetric": AuditLogMetric{},
		"KeyRotationMetric": KeyRotationMetric{}, "TenantKeyAge": TenantKeyAge{}, "RetentionMetric": RetentionMetric{},
		"ArtifactHash": ArtifactHash{}, "ClientPrivacyMetric": ClientPrivacyMetric{}, "DeterminismMetric": DeterminismMetric{},
		"ComplianceEvent": ComplianceEvent{}, "ComplianceEventsPage": ComplianceEventsPage{},
		"ScanSummaryRequest": ScanSummaryRequest{}, "ScanSummaryResult": ScanSummaryResult{},
		"PackageRequest": PackageRequest{}, "PackageResult": PackageResult{}, "Signer": Signer{},
	}
	for name, v := range types {
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		want := jsonFields(reflect.TypeOf(v))
		var got []string
		for p := range s.Properties {
			got = append(got, p)
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("schema %s: properties %v, Go fields %v", name, got, want)
		}
		for _, r := range s.Required {
			if !slices.Contains(want, r) {
				t.Errorf("schema %s: required %q is not a field", name, r)
			}
		}
	}
	for name := range doc.Components.Schemas {
		if _, ok := types[name]; !ok {
			t.Errorf("schema %s has no Go type in the test", name)
		}
	}
	for _, p := range []string{"/api/v1/training_clients", "/api/v1/training_clients/{id}", "/api/v1/training_clients/{id}/forward_backward",
		"/api/v1/training_clients/{id}/forward", "/api/v1/training_clients/{id}/optim_step", "/api/v1/training_clients/{id}/sample",
		"/api/v1/training_clients/{id}/save_state", "/api/v1/training_clients/{id}/load_state",
		"/api/v1/training_clients/{id}/dp_metrics", "/api/v1/futures/{id}", "/api/v1/artifacts", "/api/v1/artifacts/{id}",
		"/api/v1/artifacts/{id}/download"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("path %s missing", p)
		}
	}
}

func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
