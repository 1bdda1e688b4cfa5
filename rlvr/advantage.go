package rlvr

import (
	"fmt"
	"math"
)

// Baseline kinds.
const (
	// BaselineMovingAverage subtracts an exponential moving average of past
	// batches' mean reward (REINFORCE's classic baseline).
	BaselineMovingAverage = "moving_average"
	// BaselineGroupMean subtracts the mean reward of the completions of the
	// same prompt (a leave-none-out group baseline).
	BaselineGroupMean = "group_mean"
	// BaselineNone uses raw rewards.
	BaselineNone = "none"
)

// AdvantageConfig says how rewards become advantages.
type AdvantageConfig struct {
	// Baseline is moving_average (default), group_mean or none.
	Baseline string
	// Decay is the moving average's weight of the past, in [0, 1)
	// (default 0.9).
	Decay float64
	// Normalize standardizes the batch's advantages: (A − mean A) / (std A
	// + Eps). Each is then at most √(n−1) in size, and a batch whose
	// advantages are all equal gives no update.
	Normalize bool
	// GroupNormalize is GRPO: (r − mean of the group) / (std of the group
	// + Eps), per prompt. It replaces Baseline and Normalize.
	GroupNormalize bool
	// Eps guards the divisions (default 1e-6).
	Eps float64
}

func (c AdvantageConfig) withDefaults() (AdvantageConfig, error) {
	switch c.Baseline {
	case "":
		c.Baseline = BaselineMovingAverage
	case BaselineMovingAverage, BaselineGroupMean, BaselineNone:
	default:
		return c, fmt.Errorf("rlvr: baseline %q, want %s, %s or %s", c.Baseline, BaselineMovingAverage, BaselineGroupMean, BaselineNone)
	}
	if c.Decay == 0 {
		c.Decay = 0.9
	}
	if !(c.Decay >= 0 && c.Decay < 1) {
		return c, fmt.Errorf("rlvr: baseline decay must be in [0, 1), got %v", c.Decay)
	}
	if c.Eps == 0 {
		c.Eps = 1e-6
	}
	if !(c.Eps > 0) {
		return c, fmt.Errorf("rlvr: eps must be > 0, got %v", c.Eps)
	}
	return c, nil
}

// MovingBaseline is the state of a moving-average baseline.
type MovingBaseline struct {
	Value float64 `json:"value"`
	// Set is false until the first batch (which then initialises Value to
	// its mean, so the first advantages are centred too).
	Set bool `json:"set"`
}

// Advantages fills each trajectory's Advantage from the rewards of groups
// (one group per prompt) and updates the moving baseline (when that is the
// baseline in use) with the batch's mean reward, after using it.
func Advantages(groups [][]Trajectory, cfg AdvantageConfig, mb *MovingBaseline) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	var all []float64
	for _, g := range groups {
		for _, t := range g {
			if math.IsNaN(t.Reward) || math.IsInf(t.Reward, 0) {
				return fmt.Errorf("rlvr: reward %v is not finite", t.Reward)
			}
			all = append(all, t.Reward)
		}
	}
	if len(all) == 0 {
		return fmt.Errorf("rlvr: no trajectories")
	}
	batchMean, _ := meanStd(all)
	if cfg.GroupNormalize {
		for _, g := range groups {
			rs := make([]float64, len(g))
			for i, t := range g {
				rs[i] = t.Reward
			}
			m, s := meanStd(rs)
			for i := range g {
				g[i].Advantage = (g[i].Reward - m) / (s + cfg.Eps)
			}
		}
		if mb != nil {
			mb.update(batchMean, cfg.Decay)
		}
		return nil
	}
	for _, g := range groups {
		var b float64
		switch cfg.Baseline {
		case BaselineGroupMean:
			rs := make([]float64, len(g))
			for i, t := range g {
				rs[i] = t.Reward
			}
			b, _ = meanStd(rs)
		case BaselineMovingAverage:
			if mb == nil {
				return fmt.Errorf("rlvr: the moving-average baseline needs its state")
			}
			b = mb.Value
			if !mb.Set {
				b = batchMean
			}
		}
		for i := range g {
			g[i].Advantage = g[i].Reward - b
		}
	}
	if cfg.Normalize {
		adv := make([]float64, 0, len(all))
		for _, g := range groups {
			for _, t := range g {
				adv = append(adv, t.Advantage)
			}
		}
		m, s := meanStd(adv)
		for _, g := range groups {
			for i := range g {
				g[i].Advantage = (g[i].Advantage - m) / (s + cfg.Eps)
			}
		}
	}
	if mb != nil {
		mb.update(batchMean, cfg.Decay)
	}
	return nil
}

func (mb *MovingBaseline) update(mean, decay float64) {
	if !mb.Set {
		mb.Value, mb.Set = mean, true
		return
	}
	mb.Value = decay*mb.Value + (1-decay)*mean
}

// meanStd returns the mean and the population standard deviation.
func meanStd(xs []float64) (float64, float64) {
	var m float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, math.Sqrt(v / float64(len(xs)))
}
