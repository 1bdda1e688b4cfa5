package rlvr

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// StateFormat names the algorithm state a Trainer keeps in a checkpoint's
// metadata under the key MetadataKey (docs/RLVR.md).
const StateFormat = "tensafe-rlvr-state/v1"

// MetadataKey is the checkpoint metadata key of the algorithm state.
const MetadataKey = "rlvr"

// maxHistory bounds the reward history kept in the state (the checkpoint
// metadata holds at most 64 KiB).
const maxHistory = 2000

// State is a Trainer's algorithm state: everything besides the adapter and
// the optimizer that a resumed run needs to continue exactly where it
// stopped.
type State struct {
	Format    string `json:"format"`
	Algorithm string `json:"algorithm"`
	// Step counts completed training steps (rollout + update).
	Step     int            `json:"step"`
	Baseline MovingBaseline `json:"baseline"`
	// RNG is the PCG state of the generator that picks the sampling seeds
	// of completions (math/rand/v2 PCG.MarshalBinary). Prompts are drawn
	// by Poisson sampling, from crypto/rand (or, in tests, from
	// Config.SamplerSeed and Step): nothing of that draw is saved.
	RNG []byte `json:"rng"`
	// RewardHistory holds each step's mean reward, the latest maxHistory.
	RewardHistory []float64 `json:"reward_history"`
}

// ErrNoState is returned by Trainer.Load for a checkpoint without an
// algorithm state in its metadata.
var ErrNoState = errors.New("rlvr: the checkpoint has no rlvr algorithm state")

func (s State) metadata() (json.RawMessage, error) {
	b, err := json.Marshal(map[string]State{MetadataKey: s})
	if err != nil {
		return nil, fmt.Errorf("rlvr: state: %w", err)
	}
	return b, nil
}

// parseState reads the state from checkpoint metadata.
func parseState(meta json.RawMessage) (State, error) {
	var m map[string]json.RawMessage
	if len(meta) == 0 {
		return State{}, ErrNoState
	}
	if err := json.Unmarshal(meta, &m); err != nil {
		return State{}, fmt.Errorf("rlvr: checkpoint metadata: %w", err)
	}
	raw, ok := m[MetadataKey]
	if !ok {
		return State{}, ErrNoState
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return State{}, fmt.Errorf("rlvr: state: %w", err)
	}
	switch {
	case s.Format != StateFormat:
		return State{}, fmt.Errorf("rlvr: state: format %q, want %q", s.Format, StateFormat)
	case s.Step < 0:
		return State{}, fmt.Errorf("rlvr: state: negative step")
	case math.IsNaN(s.Baseline.Value) || math.IsInf(s.Baseline.Value, 0):
		return State{}, fmt.Errorf("rlvr: state: baseline is not finite")
	case len(s.RewardHistory) > maxHistory:
		return State{}, fmt.Errorf("rlvr: state: %d history entries, at most %d", len(s.RewardHistory), maxHistory)
	}
	return s, nil
}
