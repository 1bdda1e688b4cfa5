package main

import (
	"bytes"
	"strings"
	"testing"
)

func runTokenize(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"tokenize"}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestTokenizeCmd(t *testing.T) {
	tests := []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"--model", "tensafe-tiny", "Hé"}, "", "72,195,169\n"},
		{[]string{"--model", "tensafe-tiny", "--special", "Hi"}, "", "256,72,105\n"},
		{[]string{"--model", "tensafe-tiny", "-"}, "ok", "111,107\n"},
		{[]string{"--model", "tensafe-tiny", "--json", "<a>"}, "", `{"ids":[60,97,62],"text":"<a>"}` + "\n"},
		{[]string{"--model", "tensafe-tiny", "--decode", "256, 72,105,257"}, "", "<bos>Hi<eos>\n"},
		{[]string{"--model", "tensafe-tiny", "--decode", "--skip-special", "256,72,105,257"}, "", "Hi\n"},
	}
	for _, tc := range tests {
		got, err := runTokenize(t, tc.stdin, tc.args...)
		if err != nil || got != tc.want {
			t.Errorf("tokenize %q = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
	for _, bad := range [][]string{
		{"--model", "tensafe-tiny", "--decode", "1,x"},
		{"--model", "tensafe-tiny", "--decode", "1,259"},
		{"--model", t.TempDir(), "hi"},
		{"hi"},
	} {
		if _, err := runTokenize(t, "", bad...); err == nil {
			t.Errorf("tokenize %q succeeded", bad)
		}
	}
}
