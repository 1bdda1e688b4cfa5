package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func runPrivacy(t *testing.T, args ...string) (map[string]any, string, error) {
	t.Helper()
	cmd := newPrivacyCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(t.Context())
	if err != nil || !strings.Contains(strings.Join(args, " "), "--json") {
		return nil, out.String(), err
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%v: output %q is not JSON: %v", args, out.String(), err)
	}
	return m, out.String(), nil
}

func TestPrivacyCLI(t *testing.T) {
	tests := []struct {
		args  []string
		key   string
		want  float64
		tol   float64
		order float64
	}{
		// Opacus accountants_test.py test_rdp_accountant.
		{[]string{"epsilon", "--q", "0.04", "--sigma", "1.5", "--steps", "2250", "--delta", "1e-5", "--json"}, "epsilon", 7.32911117143, 5e-8, 3.9},
		// TF Privacy tutorials README: eps = 3.01 (classic conversion, old orders).
		{[]string{"epsilon", "--q", "0.004266666666666667", "--sigma", "1.1", "--steps", "14063", "--delta", "1e-5",
			"--conversion", "classic", "--orders", "tfp-legacy", "--json"}, "epsilon", 3.01, 0.005, 0},
		{[]string{"delta", "--q", "0.04", "--sigma", "1.5", "--steps", "2250", "--epsilon", "7.32911117143", "--json"}, "delta", 1e-5, 1e-9, 3.9},
		// Opacus test_get_noise_multiplier_rdp_epochs.
		{[]string{"sigma", "--epsilon", "8", "--delta", "1e-5", "--q", "0.04", "--epochs", "90", "--json"}, "sigma", 1.416, 5e-5, 0},
		{[]string{"steps", "--epsilon", "8", "--delta", "1e-5", "--q", "0.04", "--sigma", "1.5", "--json"}, "steps", 2622, 0, 0},
	}
	for _, tc := range tests {
		m, _, err := runPrivacy(t, tc.args...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		got, _ := m[tc.key].(float64)
		if math.Abs(got-tc.want) > tc.tol {
			t.Errorf("%v: %s = %v, want %v", tc.args, tc.key, got, tc.want)
		}
		for _, k := range []string{"epsilon", "delta", "accountant"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%v: JSON lacks %q: %v", tc.args, k, m)
			}
		}
		if tc.order != 0 && m["order"] != tc.order {
			t.Errorf("%v: order = %v, want %v", tc.args, m["order"], tc.order)
		}
	}
	// Human-readable output.
	_, out, err := runPrivacy(t, "epsilon", "--q", "0.04", "--sigma", "1.5", "--steps", "2250", "--delta", "1e-5")
	if err != nil || !strings.Contains(out, "ε = 7.32911") || !strings.Contains(out, "optimal order 3.9") {
		t.Errorf("text output %q (%v)", out, err)
	}
}

func TestPrivacyCLIErrorsNameTheFlag(t *testing.T) {
	tests := []struct {
		args []string
		flag string
	}{
		{[]string{"epsilon", "--q", "0", "--sigma", "1", "--steps", "1", "--delta", "1e-5"}, "--q"},
		{[]string{"epsilon", "--q", "1.5", "--sigma", "1", "--steps", "1", "--delta", "1e-5"}, "--q"},
		{[]string{"epsilon", "--q", "0.1", "--sigma", "-1", "--steps", "1", "--delta", "1e-5"}, "--sigma"},
		{[]string{"epsilon", "--q", "0.1", "--sigma", "NaN", "--steps", "1", "--delta", "1e-5"}, "--sigma"},
		{[]string{"epsilon", "--q", "0.1", "--sigma", "1", "--steps", "-5", "--delta", "1e-5"}, "--steps"},
		{[]string{"epsilon", "--q", "0.1", "--sigma", "1", "--steps", "5", "--delta", "1"}, "--delta"},
		{[]string{"epsilon", "--q", "0.1", "--sigma", "1", "--steps", "5"}, "--delta"},
		{[]string{"epsilon", "--q", "x", "--sigma", "1", "--steps", "5", "--delta", "1e-5"}, "--q"},
		{[]string{"epsilon", "--q", "0.1", "--sigma", "1", "--steps", "5", "--delta", "1e-5", "--orders", "0.5"}, "--orders"},
		{[]string{"epsilon", "--q", "0.1", "--sigma", "1", "--steps", "5", "--delta", "1e-5", "--accountant", "gdp"}, "--accountant"},
		{[]string{"epsilon", "--q", "0.1", "--sigma", "1", "--steps", "5", "--delta", "1e-5", "--conversion", "x"}, "--conversion"},
		{[]string{"epsilon", "--q", "0.1", "--sigma", "1", "--steps", "5", "--delta", "1e-5", "--accountant", "prv", "--orders", "2"}, "--orders"},
		{[]string{"delta", "--q", "0.1", "--sigma", "1", "--steps", "5", "--epsilon", "-1"}, "--epsilon"},
		{[]string{"sigma", "--epsilon", "1", "--delta", "1e-5", "--q", "0.1"}, "--steps"},
		{[]string{"sigma", "--epsilon", "1", "--delta", "1e-5", "--q", "0.1", "--epochs", "-2"}, "--epochs"},
		{[]string{"sigma", "--epsilon", "0", "--delta", "1e-5", "--q", "0.1", "--steps", "3"}, "--epsilon"},
		{[]string{"steps", "--epsilon", "1", "--delta", "1e-5", "--q", "0.1", "--sigma", "0"}, "--sigma"},
	}
	for _, tc := range tests {
		_, _, err := runPrivacy(t, tc.args...)
		if err == nil {
			t.Errorf("%v: no error", tc.args)
			continue
		}
		if !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%v: error %q does not name %s", tc.args, err, tc.flag)
		}
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("%v: exit status %d, want 2 (%v)", tc.args, exitCode(err), err)
		}
	}
}
