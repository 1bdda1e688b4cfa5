package service

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/engine"
)

// CheckpointFormat names the plaintext inside a checkpoint artifact's
// envelope (docs/API.md, "Checkpoint artifacts"). v2 adds the header's
// metadata field; readers also accept CheckpointFormatV1.
const CheckpointFormat = "tensafe-service-checkpoint/v2"

// CheckpointFormatV1 is the previous format: v2 without metadata.
const CheckpointFormatV1 = "tensafe-service-checkpoint/v1"

const (
	checkpointMagic     = "TSSVCKP1"
	maxCheckpointHeader = 1 << 20
	maxBudgetState      = 1 << 20
)

// checkpointHeader is the JSON header of a checkpoint.
type checkpointHeader struct {
	Format     string             `json:"format"`
	BaseModel  string             `json:"base_model"`
	Config     api.TrainingConfig `json:"config"`
	Step       int64              `json:"step"`
	BudgetSize int64              `json:"budget_size"`
	EngineSize int64              `json:"engine_size"`
	// Metadata is the caller's JSON object (SaveStateRequest.Metadata), v2
	// only.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// SavedBy is the id of the training client that saved the checkpoint.
	// load_state's lineage rule reads it here, inside the authenticated
	// envelope, rather than from the artifact record, which anyone with
	// write access to the database could change. Absent in checkpoints
	// written before it existed: such a checkpoint counts as another
	// client's (its history is composed, never dropped).
	SavedBy string `json:"saved_by,omitempty"`
}

// checkpoint is a decoded checkpoint: the header, the accountant's state
// (privacy.Budget.MarshalBinary) and the engine state (engine.Save).
type checkpoint struct {
	header checkpointHeader
	budget []byte
	engine []byte
}

// marshalCheckpoint writes magic, a big-endian uint32 header length, the
// header JSON, the budget state and the engine state.
func marshalCheckpoint(h checkpointHeader, budget, eng []byte) ([]byte, error) {
	h.Format = CheckpointFormat
	h.BudgetSize, h.EngineSize = int64(len(budget)), int64(len(eng))
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("service: checkpoint header: %w", err)
	}
	if len(hj) > maxCheckpointHeader {
		return nil, fmt.Errorf("service: checkpoint header: %d bytes, at most %d", len(hj), maxCheckpointHeader)
	}
	var b bytes.Buffer
	b.Grow(len(checkpointMagic) + 4 + len(hj) + len(budget) + len(eng))
	b.WriteString(checkpointMagic)
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(hj))))
	b.Write(hj)
	b.Write(budget)
	b.Write(eng)
	return b.Bytes(), nil
}

var errCheckpoint = errors.New("service: malformed checkpoint")

// parseCheckpoint decodes a checkpoint, refusing anything but the exact
// layout: unknown header fields, sizes that do not add up, trailing bytes.
func parseCheckpoint(data []byte) (*checkpoint, error) {
	if len(data) < len(checkpointMagic)+4 || string(data[:len(checkpointMagic)]) != checkpointMagic {
		return nil, fmt.Errorf("%w: bad magic", errCheckpoint)
	}
	rest := data[len(checkpointMagic):]
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if n > maxCheckpointHeader || uint64(n) > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: header length %d out of range", errCheckpoint, n)
	}
	var h checkpointHeader
	dec := json.NewDecoder(bytes.NewReader(rest[:n]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: header: %w", errCheckpoint, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: header: trailing data", errCheckpoint)
	}
	switch {
	case h.Format == CheckpointFormatV1 && h.Metadata != nil:
		return nil, fmt.Errorf("%w: metadata is not a field of %s", errCheckpoint, CheckpointFormatV1)
	case h.Format == CheckpointFormatV1 && h.SavedBy != "":
		return nil, fmt.Errorf("%w: saved_by is not a field of %s", errCheckpoint, CheckpointFormatV1)
	case h.Format != CheckpointFormat && h.Format != CheckpointFormatV1:
		return nil, fmt.Errorf("%w: format %q, want %q or %q", errCheckpoint, h.Format, CheckpointFormat, CheckpointFormatV1)
	}
	if h.Metadata != nil {
		if err := checkMetadata(h.Metadata); err != nil {
			return nil, fmt.Errorf("%w: %w", errCheckpoint, err)
		}
	}
	rest = rest[n:]
	switch {
	case h.Step < 0:
		return nil, fmt.Errorf("%w: negative step", errCheckpoint)
	case h.BudgetSize < 1 || h.BudgetSize > maxBudgetState:
		return nil, fmt.Errorf("%w: budget_size %d out of range", errCheckpoint, h.BudgetSize)
	case h.EngineSize < 1 || h.EngineSize > engine.MaxStateSize:
		return nil, fmt.Errorf("%w: engine_size %d out of range", errCheckpoint, h.EngineSize)
	case h.BudgetSize+h.EngineSize != int64(len(rest)):
		return nil, fmt.Errorf("%w: sizes %d + %d do not match the %d bytes that follow the header", errCheckpoint, h.BudgetSize, h.EngineSize, len(rest))
	}
	return &checkpoint{header: h, budget: rest[:h.BudgetSize], engine: rest[h.BudgetSize:]}, nil
}

// checkMetadata accepts a JSON object of at most api.MaxCheckpointMetadata
// bytes.
func checkMetadata(m json.RawMessage) error {
	if len(m) > api.MaxCheckpointMetadata {
		return fieldErr("metadata", "%d bytes, at most %d allowed", len(m), api.MaxCheckpointMetadata)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(m, &obj); err != nil || obj == nil {
		return fieldErr("metadata", "must be a JSON object")
	}
	return nil
}
