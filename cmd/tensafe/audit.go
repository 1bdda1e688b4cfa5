package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/seal"
)

const defaultAuditDir = "tensafe-data/audit"

// Exit statuses of the audit commands.
const (
	auditExitBad        = 2 // the log or a proof does not verify
	auditExitIncomplete = 3 // the chain and roots verify, but no signature was checked
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify the tamper-evident audit log and prove entries in it",
		Long: `The audit log is a hash chain of entries with a Merkle tree over them and
signed checkpoints (docs/AUDIT_LOG.md). These commands read a file log
directory (entries.jsonl, checkpoints.jsonl).`,
	}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditProofCmd(), newAuditVerifyProofCmd(), newAuditRepairCmd())
	return cmd
}

func openAuditDir(dir string) (*audit.FileStore, error) {
	s, err := audit.OpenFileStore(dir, audit.FileOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("--log %s: %w", dir, err)
	}
	return s, nil
}

func readVerifyingKey(path string) (*seal.VerifyingKey, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	k, err := seal.ParseVerifyingKeyText(string(b))
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", path, err)
	}
	return k, nil
}

func newAuditVerifyCmd() *cobra.Command {
	var (
		dir, keyFile, trustedFile string
		from, to                  uint64
	)
	cmd := &cobra.Command{
		Use:   "verify [--log DIR] [--from N] [--to N] [--key PUBKEYFILE] [--trusted CHECKPOINTFILE]",
		Short: "Verify the hash chain, the Merkle roots and the signed checkpoints",
		Long: `Verify checks every entry from --from on (seq in place, genesis, content hash,
link to the previous entry, time order), that no partial entry is left at the
end, and every stored checkpoint: well formed, in order, matching the Merkle
root of the log at its size, and — with --key — signed by that key.

--trusted names a checkpoint kept outside the log (by a witness or an earlier
run); the log must contain it and its stored checkpoints must not be older, which
catches a rewrite whose attacker also dropped the checkpoints that gave it away.

Exit status: 0 when the chain and the checkpoints verify, signatures included;
2 when something does not verify (the first bad seq, or the bad checkpoint, is
on stderr); 3 when the chain and roots verify but no signature was checked (no
--key, or no checkpoint); 1 for other errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := readVerifyingKey(keyFile)
			if err != nil {
				return err
			}
			opts := audit.VerifyOptions{From: from, Key: key}
			if cmd.Flags().Changed("to") {
				opts.To = to + 1 // --to is inclusive on the command line
			}
			if trustedFile != "" {
				if key == nil {
					return errors.New("--trusted needs --key, the log's verifying key")
				}
				if opts.Trusted, err = os.ReadFile(trustedFile); err != nil {
					return fmt.Errorf("--trusted: %w", err)
				}
			}
			store, err := openAuditDir(dir)
			if err != nil {
				return err
			}
			defer store.Close()
			res, err := audit.Verify(cmd.Context(), store, opts)
			if err != nil {
				var ve *audit.VerifyError
				var ce *audit.CheckpointError
				var tt *audit.TornTailError
				if errors.As(err, &ve) || errors.As(err, &ce) || errors.As(err, &tt) {
					return &exitError{code: auditExitBad, err: err}
				}
				return err
			}
			return printVerifyResult(cmd.OutOrStdout(), cmd.ErrOrStderr(), dir, res, key)
		},
	}
	cmd.Flags().StringVar(&dir, "log", defaultAuditDir, "audit log directory")
	cmd.Flags().Uint64Var(&from, "from", 0, "check entries in full from this seq on (earlier entries feed the Merkle tree only)")
	cmd.Flags().Uint64Var(&to, "to", 0, "check entries up to this seq, inclusive (default: the end of the log)")
	cmd.Flags().StringVar(&keyFile, "key", "", "the log's checkpoint verifying key (tensafe-sign-pub-v1:..., e.g. from tensafe keys signer new)")
	cmd.Flags().StringVar(&trustedFile, "trusted", "", "a checkpoint note known from outside the log, which the log must contain")
	return cmd
}

func printVerifyResult(stdout, stderr io.Writer, dir string, res *audit.VerifyResult, key *seal.VerifyingKey) error {
	fmt.Fprintf(stdout, "audit log %s (origin %s)\n", dir, res.Origin)
	fmt.Fprintf(stdout, "entries: %d; seqs %d..%d checked in full; Merkle root %s\n", res.Size, res.From, res.To-1, res.Root)
	if res.Latest == nil {
		fmt.Fprintln(stdout, "checkpoints: none")
		fmt.Fprintln(stderr, "tensafe: audit verify: the log has no checkpoints: nothing signed vouches for it")
		return &exitError{code: auditExitIncomplete, err: errors.New("audit verify: incomplete: no checkpoint to check")}
	}
	signed := "signatures NOT checked (no --key)"
	if res.SignaturesChecked {
		signed = "signed by " + key.KeyID()
	}
	fmt.Fprintf(stdout, "checkpoints: %d match the log, %s; latest: size %d at %s\n",
		res.Checkpoints, signed, res.Latest.Size, res.Latest.Time.Format("2006-01-02T15:04:05.999999999Z07:00"))
	if res.Size > res.Latest.Size {
		fmt.Fprintf(stdout, "not yet checkpointed: seqs %d..%d\n", res.Latest.Size, res.Size-1)
	}
	if !res.SignaturesChecked {
		return &exitError{code: auditExitIncomplete, err: errors.New("audit verify: incomplete: checkpoint signatures not checked; pass --key")}
	}
	fmt.Fprintln(stdout, "OK")
	return nil
}

func newAuditProofCmd() *cobra.Command {
	var (
		dir, keyFile string
		size         uint64
	)
	cmd := &cobra.Command{
		Use:   "proof SEQ [--log DIR] [--size N] [--key PUBKEYFILE]",
		Short: "Print the inclusion proof of an entry (JSON) against a signed checkpoint",
		Long: `Proof prints, as JSON (docs/AUDIT_LOG.md §6), the entry SEQ, its Merkle audit
path to the root of a tree of --size entries and the checkpoint that signs that
root. By default the tree is that of the latest checkpoint that covers SEQ, or
the whole log when none does yet. With --key the proof is verified before it
is printed. Anyone can check it with "tensafe audit verify-proof".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("SEQ: %q is not an entry number", args[0])
			}
			key, err := readVerifyingKey(keyFile)
			if err != nil {
				return err
			}
			store, err := openAuditDir(dir)
			if err != nil {
				return err
			}
			defer store.Close()
			p, err := audit.Prove(cmd.Context(), store, seq, size)
			if err != nil {
				return err
			}
			if key != nil {
				if err := p.Verify(key); err != nil {
					return &exitError{code: auditExitBad, err: fmt.Errorf("the proof does not verify (run tensafe audit verify): %w", err)}
				}
			}
			b, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "log", defaultAuditDir, "audit log directory")
	cmd.Flags().Uint64Var(&size, "size", 0, "tree size to prove against (default: the latest checkpoint covering SEQ)")
	cmd.Flags().StringVar(&keyFile, "key", "", "verify the proof with this checkpoint verifying key before printing it")
	return cmd
}

func newAuditVerifyProofCmd() *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "verify-proof FILE --key PUBKEYFILE",
		Short: "Check an inclusion proof (from tensafe audit proof) without the log",
		Long: `Verify-proof checks that the entry in the proof hashes to its entry hash,
that its audit path leads to the root, and that the checkpoint in the proof is
signed by --key and commits to that root. FILE "-" reads standard input.
Exit status 0 when it verifies, 2 when it does not.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := readVerifyingKey(keyFile)
			if err != nil {
				return err
			}
			if key == nil {
				return errors.New("--key: the log's checkpoint verifying key is required")
			}
			var b []byte
			if args[0] == "-" {
				b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
			} else {
				b, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			var p audit.InclusionProof
			if err := json.Unmarshal(b, &p); err != nil {
				return &exitError{code: auditExitBad, err: err}
			}
			if err := p.Verify(key); err != nil {
				return &exitError{code: auditExitBad, err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: seq %d (%s %s) is in %s at tree size %d, checkpoint signed by %s\n",
				p.Seq, p.Entry.Operation, p.Entry.Outcome, p.Origin, p.TreeSize, key.KeyID())
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "the log's checkpoint verifying key (tensafe-sign-pub-v1:...)")
	return cmd
}

func newAuditRepairCmd() *cobra.Command {
	var dir, actor, signerFile string
	cmd := &cobra.Command{
		Use:   "repair [--log DIR] --actor NAME [--signing-key SECFILE]",
		Short: "Move a torn tail (a partial entry left by a crash) aside and record the repair",
		Long: `After a crash in the middle of an append, the log ends in a partial entry and
refuses to open for writing. Repair appends the partial bytes to
entries.jsonl.torn (or checkpoints.jsonl.torn), truncates the file after its last
complete record, verifies the log and appends an audit.torn_tail_repaired entry
naming the actor, the offset, the length and the SHA-256 of the bytes moved.
Stop the server first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if actor == "" {
				return errors.New("--actor: who performs the repair is required (it goes on the record)")
			}
			var signer *seal.SigningKey
			if signerFile != "" {
				b, err := os.ReadFile(signerFile)
				if err != nil {
					return fmt.Errorf("--signing-key: %w", err)
				}
				defer clear(b)
				if signer, err = seal.ParseSigningKeyText(string(b)); err != nil {
					return fmt.Errorf("--signing-key %s: %w", signerFile, err)
				}
			}
			repairs, err := audit.RepairTornTail(dir)
			if err != nil {
				return err
			}
			origin, err := auditOrigin(cmd.Context(), dir)
			if err != nil {
				return err
			}
			store, err := audit.OpenFileStore(dir, audit.FileOptions{})
			if err != nil {
				return err
			}
			l, err := audit.Open(cmd.Context(), store, audit.Options{Origin: origin, Signer: signer})
			if err != nil {
				store.Close()
				return &exitError{code: auditExitBad, err: err}
			}
			err = l.RecordRepair(cmd.Context(), actor, repairs)
			if cerr := l.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			for _, r := range repairs {
				fmt.Fprintf(cmd.OutOrStdout(), "moved %d bytes at offset %d of %s to %s (sha256:%s)\n", r.Length, r.Offset, r.File, r.SavedTo, r.MovedSHA256)
			}
			if len(repairs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no torn tail; nothing to repair")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "log", defaultAuditDir, "audit log directory")
	cmd.Flags().StringVar(&actor, "actor", "", "who performs the repair")
	cmd.Flags().StringVar(&signerFile, "signing-key", "", "checkpoint signing key (tensafe-sign-secret-v1:...), to sign a checkpoint after the repair")
	return cmd
}

// auditOrigin reads the origin from the genesis entry of the log in dir.
func auditOrigin(ctx context.Context, dir string) (string, error) {
	store, err := openAuditDir(dir)
	if err != nil {
		return "", err
	}
	defer store.Close()
	var origin string
	stop := errors.New("stop")
	err = store.Scan(ctx, 0, func(_ uint64, e audit.Entry) error {
		if e.IsGenesis() {
			origin = e.Origin()
		}
		return stop
	})
	if err != nil && !errors.Is(err, stop) {
		return "", err
	}
	if origin == "" {
		return "", fmt.Errorf("--log %s: no genesis entry", dir)
	}
	return origin, nil
}
