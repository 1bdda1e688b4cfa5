package rlvr_test

import (
	"fmt"
	"strings"

	"github.com/tensafe/tensafe/rlvr"
)

// A reward is resolved by name with keyword arguments, and rewards sum
// with weights. A program adds its own with Register or RegisterFunc
// (here on a private registry).
func Example_rewards() {
	reg := rlvr.NewRegistry()
	err := reg.RegisterFunc("polite", func(s rlvr.Sample) (float64, error) {
		if strings.Contains(strings.ToLower(s.Completion), "please") {
			return 1, nil
		}
		return 0, nil
	})
	if err != nil {
		panic(err)
	}
	half := 0.5
	reward, err := reg.ResolveAll([]rlvr.RewardSpec{
		{Type: "numeric_match", Kwargs: map[string]any{"tolerance": 0.01}},
		{Type: "polite", Weight: &half},
	})
	if err != nil {
		panic(err)
	}
	for _, completion := range []string{"6 × 7 = 42, please.", "It is 41.", "Please: 42.001"} {
		r, err := reward(rlvr.Sample{Prompt: "What is 6 × 7?", Completion: completion, Answer: "42"})
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-22q %.1f\n", completion, r)
	}
	// Output:
	// "6 × 7 = 42, please."  1.5
	// "It is 41."            0.0
	// "Please: 42.001"       1.5
}
