package main

import (
	"context"

	"github.com/tensafe/tensafe/benchsuite"
)

func benchRLVRGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	r.Skip("rlvr", "package rlvr (REINFORCE, PPO, rewards) is not in this build")
	return nil
}
