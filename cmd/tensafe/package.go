package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/safetensors"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/tssp"
)

// newPackageCmd is `tensafe package`: TenSafe Secure Packages (docs/TSSP_SPEC.md).
func newPackageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "package",
		Short: "Create, inspect, verify and open signed, encrypted adapter packages (TSSP)",
		Long: `A TenSafe Secure Package (.tssp) carries a LoRA adapter out of TenSafe: the
weights encrypted to each recipient's hybrid X25519 + ML-KEM-768 key, the DP
certificate and training evidence, and a manifest that commits to all of it,
signed with a hybrid Ed25519 + ML-DSA-65 key. Keys come from
'tensafe keys signer new' and 'tensafe keys recipient new'. See docs/TSSP_SPEC.md.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newPackageCreateCmd(), newPackageInspectCmd(), newPackageVerifyCmd(), newPackageOpenCmd(), newPackageSignerCmd())
	return cmd
}

func newPackageCreateCmd() *cobra.Command {
	var (
		adapterDir, artifact, baseModel, baseHash, certFile, evidenceFile, signerFile, out, tenant string
		kf                                                                                         keyringFlags
		recipientFiles                                                                             []string
		asJSON                                                                                     bool
		srv                                                                                        serverFlags
	)
	cmd := &cobra.Command{
		Use:   "create (--adapter DIR --base-model NAME --signer KEYFILE | --artifact ID --server URL) --recipient PUBKEYFILE... --out FILE",
		Short: "Package a PEFT adapter folder, or a checkpoint saved on a TenSafe server: encrypt to recipients, sign",
		Long: `Package a PEFT LoRA adapter folder (adapter_config.json and
adapter_model.safetensors). The weights are encrypted under a fresh data key,
which is sealed to every --recipient; the manifest is signed with --signer.
When --base-model is a model folder its hash is recorded too. --dp-certificate
must certify exactly these weights (its adapter_hash is their SHA-256).

With --artifact ID the server packages a checkpoint it saved (save_state): it
adds the DP certificate of the checkpoint's accountant and the evidence
(training configuration, steps, loss summary, dataset fingerprint, and the
audit log entries of the training operations with inclusion proofs), and signs
with its package signing key. The package is downloaded and verified against
that key (--trusted-key pins it; otherwise the key the server names is used
and its id printed) before --out is written. --tenant-key also lets the
tenant open it with its own KEK. The API key comes from --api-key or
TENSAFE_API_KEY.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if artifact != "" {
				if adapterDir != "" || signerFile != "" || baseModel != "" || certFile != "" || evidenceFile != "" || tenant != "" {
					return usageError("--artifact: the server makes the whole package; --adapter, --signer, --base-model, --dp-certificate, --evidence and --tenant do not apply (use --tenant-key)")
				}
				return createFromArtifact(cmd, srv, artifact, recipientFiles, out, asJSON)
			}
			if srv.tenantKey || len(srv.trusted) > 0 || srv.name != "" {
				return usageError("--tenant-key, --trusted-key and --name apply to --artifact only")
			}
			for _, f := range []struct{ name, v string }{{"--adapter", adapterDir}, {"--base-model", baseModel}, {"--signer", signerFile}, {"--out", out}} {
				if f.v == "" {
					return usageError("%s is required", f.name)
				}
			}
			if len(recipientFiles) == 0 && tenant == "" {
				return usageError("--recipient is required (a recipient public key file; give it once per recipient), or --tenant")
			}
			config, err := os.ReadFile(filepath.Join(adapterDir, tssp.FileAdapterConfig))
			if err != nil {
				return fmt.Errorf("--adapter: %w", err)
			}
			weights, err := os.Open(filepath.Join(adapterDir, tssp.FileAdapterWeights))
			if err != nil {
				return fmt.Errorf("--adapter: %w", err)
			}
			defer weights.Close()
			signer, err := readSigningKeyFile(signerFile)
			if err != nil {
				return err
			}
			recipients, err := readRecipientFiles(recipientFiles)
			if err != nil {
				return err
			}
			bm := tssp.BaseModel{Name: baseModel, Hash: baseHash}
			if st, err := os.Stat(baseModel); err == nil && st.IsDir() {
				h, err := tssp.BaseModelHash(baseModel)
				if err != nil {
					return fmt.Errorf("--base-model: %w", err)
				}
				if baseHash != "" && baseHash != h {
					return usageError("--base-model-hash %s differs from the hash of %s (%s)", baseHash, baseModel, h)
				}
				bm.Hash = h
			}
			opts := tssp.CreateOptions{
				AdapterConfig: config, Weights: weights, BaseModel: bm,
				Signer: signer, Recipients: recipients, Producer: "tensafe " + version,
				TempDir: filepath.Dir(out),
			}
			if tenant != "" {
				ring, err := kf.open(cmd)
				if err != nil {
					return err
				}
				defer ring.Close()
				opts.Tenant = &tssp.TenantKey{Provider: ring, Tenant: tenant}
			}
			if certFile != "" {
				if opts.Certificate, err = os.ReadFile(certFile); err != nil {
					return fmt.Errorf("--dp-certificate: %w", err)
				}
			}
			if evidenceFile != "" {
				if opts.Evidence, err = os.ReadFile(evidenceFile); err != nil {
					return fmt.Errorf("--evidence: %w", err)
				}
			}
			m, err := createPackageFile(cmd, out, opts)
			switch {
			case errors.Is(err, tssp.ErrCertificate):
				return fmt.Errorf("--dp-certificate %s: %w", certFile, err)
			case errors.Is(err, tssp.ErrEvidence):
				return fmt.Errorf("--evidence %s: %w", evidenceFile, err)
			case errors.Is(err, tssp.ErrAdapterConfig):
				return fmt.Errorf("--adapter %s: %w", adapterDir, err)
			case err != nil:
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), m)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: package %s, signer %s, %d recipient(s)\n", out, m.PackageID, m.Signer, len(m.Recipients))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&adapterDir, "adapter", "", "PEFT adapter folder (adapter_config.json, adapter_model.safetensors)")
	f.StringVar(&artifact, "artifact", "", "checkpoint artifact id on the TenSafe server (--server) to package there")
	f.StringVar(&baseModel, "base-model", "", "base model name or Hugging Face folder (a folder's hash is recorded)")
	f.StringVar(&baseHash, "base-model-hash", "", `base model hash ("sha256:..."), when --base-model is a name`)
	f.StringVar(&certFile, "dp-certificate", "", "DP certificate (canonical JSON) of the training run")
	f.StringVar(&evidenceFile, "evidence", "", "training evidence, a JSON object")
	f.StringVar(&signerFile, "signer", "", "signing key file (tensafe keys signer new)")
	f.StringArrayVar(&recipientFiles, "recipient", nil, "recipient public key file (repeatable)")
	f.StringVar(&out, "out", "", "package file to write (must not exist)")
	f.StringVar(&tenant, "tenant", "", "also wrap the data key under this tenant's KEK in the keyring, for its own use")
	f.BoolVar(&asJSON, "json", false, "print the manifest as JSON")
	kf.register(cmd)
	srv.register(cmd)
	f.BoolVar(&srv.tenantKey, "tenant-key", false, "with --artifact: also let the tenant open the package with its own KEK")
	f.StringArrayVar(&srv.trusted, "trusted-key", nil, "with --artifact: the server's package signing public key file to pin (repeatable)")
	f.StringVar(&srv.name, "name", "", "with --artifact: name of the package artifact on the server")
	return cmd
}

// createPackageFile writes the package to a temporary file beside out and
// links it into place only once it is complete, never over an existing file.
func createPackageFile(cmd *cobra.Command, out string, opts tssp.CreateOptions) (*tssp.Manifest, error) {
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("--out %s: %w", out, fs.ErrExist)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".tssp-create-*")
	if err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	defer os.Remove(tmp.Name())
	m, err := tssp.Create(cmd.Context(), tmp, opts)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		// Link, not rename: it fails when out appeared meanwhile.
		err = os.Link(tmp.Name(), out)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

func readSigningKeyFile(path string) (*seal.SigningKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--signer: %w", err)
	}
	defer clear(b)
	k, err := seal.ParseSigningKeyText(string(b))
	if err != nil {
		return nil, fmt.Errorf("--signer %s: %w", path, err)
	}
	return k, nil
}

func readTrustedKeys(paths []string) ([]*seal.VerifyingKey, error) {
	if len(paths) == 0 {
		return nil, usageError("--trusted-key is required (the signer's public key file; repeatable)")
	}
	var keys []*seal.VerifyingKey
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--trusted-key: %w", err)
		}
		k, err := seal.ParseVerifyingKeyText(string(b))
		if err != nil {
			return nil, fmt.Errorf("--trusted-key %s: %w", path, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func readIdentity(path string) (*seal.RecipientKey, error) {
	if path == "" {
		return nil, usageError("--identity is required (a recipient secret key file)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--identity: %w", err)
	}
	defer clear(b)
	k, err := seal.ParseRecipientKeyText(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("--identity %s: %w", path, err)
	}
	return k, nil
}

// verifyFailed is a package that did not verify or open: exit status 3.
func verifyFailed(err error) error { return &exitError{code: 3, err: err} }

func newPackageInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print a package's manifest, DP certificate and signer key id (nothing verified or decrypted)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, closeFile, err := tssp.ReadFile(args[0])
			if err != nil {
				return verifyFailed(err)
			}
			defer closeFile()
			m := p.Manifest()
			certJSON, err := p.UnverifiedMember(tssp.NameCertificate)
			if err != nil {
				return verifyFailed(err)
			}
			var cert *privacy.Certificate
			if certJSON != nil {
				if cert, err = privacy.ParseCertificate(certJSON); err != nil {
					return verifyFailed(fmt.Errorf("%s: %w", tssp.NameCertificate, err))
				}
			}
			evJSON, err := p.UnverifiedMember(tssp.NameEvidence)
			if err != nil {
				return verifyFailed(err)
			}
			var ev *tssp.Evidence
			if evJSON != nil {
				// Evidence of another schema is still a valid package.
				ev, _ = tssp.ParseEvidence(evJSON)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				out := map[string]any{"manifest": m, "dp_certificate": cert, "verified": false}
				if ev != nil {
					ev.Audit.Proofs = nil // summarised below; `package open` writes evidence.json whole
					out["evidence"] = ev
				}
				return printJSON(w, out)
			}
			fmt.Fprintf(w, "NOT VERIFIED (use tensafe package verify --trusted-key)\n")
			fmt.Fprintf(w, "format:      %s\npackage id:  %s\ncreated:     %s\nproducer:    %s\nsigner:      %s\n",
				m.Format, m.PackageID, m.Created, m.Producer, m.Signer)
			fmt.Fprintf(w, "base model:  %s", m.BaseModel.Name)
			if m.BaseModel.Hash != "" {
				fmt.Fprintf(w, " (%s)", m.BaseModel.Hash)
			}
			fmt.Fprintf(w, "\nadapter:     %s rank %d alpha %v modules %v\n", m.Adapter.PEFTType, m.Adapter.Rank, m.Adapter.LoRAAlpha, m.Adapter.TargetModules)
			fmt.Fprintf(w, "weights:     %d bytes, %s\n", m.Weights.PlaintextSize, m.Weights.PlaintextSHA256)
			for _, mem := range m.Members {
				fmt.Fprintf(w, "member:      %-20s %10d %s\n", mem.Name, mem.Size, mem.SHA256)
			}
			for _, r := range m.Recipients {
				fmt.Fprintf(w, "recipient:   %s\n", r.KeyID)
			}
			if t := m.TenantKEK; t != nil {
				fmt.Fprintf(w, "tenant KEK:  %s version %d\n", t.KeyID, t.KEKVersion)
			}
			if cert != nil {
				fmt.Fprintf(w, "DP:          (ε = %.4g, δ = %g), %s accountant, %d steps, q %g, σ %g, sampling %s\n",
					cert.Epsilon, cert.Delta, cert.Accountant, cert.Steps, cert.Q, cert.Sigma, cert.Sampling)
			} else {
				fmt.Fprintf(w, "DP:          no certificate\n")
			}
			switch {
			case ev != nil:
				fmt.Fprintf(w, "evidence:    checkpoint %s of client(s) %v, %d optim steps, %d batches (fingerprint %s), loss %.4g → %.4g\n",
					ev.Checkpoint.ArtifactID, ev.Training.Clients, ev.Training.OptimSteps, ev.Dataset.Batches, ev.Dataset.Fingerprint, ev.Loss.First, ev.Loss.Last)
				fmt.Fprintf(w, "sampling:    %s\n", evidenceSampling(ev))
				fmt.Fprintf(w, "audit:       %d entries proven in %s at tree size %d (check with package verify --audit-key)\n",
					len(ev.Audit.Proofs), ev.Audit.Origin, ev.Audit.TreeSize)
			case evJSON != nil:
				fmt.Fprintf(w, "evidence:    %d bytes (not the %s schema)\n", len(evJSON), tssp.EvidenceFormat)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newPackageVerifyCmd() *cobra.Command {
	var trustedFiles []string
	var auditKeyFile string
	cmd := &cobra.Command{
		Use:   "verify FILE --trusted-key KEY... [--audit-key KEY]",
		Short: "Verify signer, signature, every member hash and the DP certificate; exit 0 only when all hold",
		Long: `Verify signer, signature, every member hash and the DP certificate; exit 0 only
when all hold. With --audit-key (the server's audit checkpoint key, printed by
'tensafe package signer --audit'), also check the evidence a TenSafe server
packaged: every training operation's audit entry and its inclusion proof
against the signed audit checkpoint, and the dataset fingerprint they give.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			trusted, err := readTrustedKeys(trustedFiles)
			if err != nil {
				return err
			}
			var auditKey *seal.VerifyingKey
			if auditKeyFile != "" {
				b, err := os.ReadFile(auditKeyFile)
				if err != nil {
					return fmt.Errorf("--audit-key: %w", err)
				}
				if auditKey, err = seal.ParseVerifyingKeyText(string(b)); err != nil {
					return fmt.Errorf("--audit-key %s: %w", auditKeyFile, err)
				}
			}
			p, closeFile, err := tssp.ReadFile(args[0])
			if err != nil {
				return verifyFailed(err)
			}
			defer closeFile()
			if err := p.Verify(cmd.Context(), trusted); err != nil {
				return verifyFailed(fmt.Errorf("%s: %w", args[0], err))
			}
			m := p.Manifest()
			proofs := ""
			if auditKey != nil {
				ev, err := verifyEvidence(p, auditKey)
				if err != nil {
					return verifyFailed(fmt.Errorf("%s: %w", args[0], err))
				}
				proofs = fmt.Sprintf(", %d audit entries proven in %s at size %d, sampling %s", len(ev.Audit.Proofs), ev.Audit.Origin, ev.Audit.TreeSize, evidenceSampling(ev))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK %s: package %s signed by %s, %d members, %d recipient(s)%s\n",
				args[0], m.PackageID, m.Signer, len(m.Members), len(m.Recipients), proofs)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&trustedFiles, "trusted-key", nil, "trusted signer public key file (repeatable)")
	cmd.Flags().StringVar(&auditKeyFile, "audit-key", "", "the server's audit checkpoint public key file: also verify the evidence's inclusion proofs")
	return cmd
}

func newPackageOpenCmd() *cobra.Command {
	var trustedFiles []string
	var identityFile, out, tenant string
	var kf keyringFlags
	cmd := &cobra.Command{
		Use:   "open FILE (--identity KEY | --tenant ID) --trusted-key KEY --out DIR",
		Short: "Verify, then decrypt to a PEFT adapter folder (written whole or not at all)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError("--out is required (a folder that does not exist yet)")
			}
			trusted, err := readTrustedKeys(trustedFiles)
			if err != nil {
				return err
			}
			var id tssp.Identity
			switch {
			case tenant != "" && identityFile != "":
				return usageError("--identity and --tenant: give one, not both")
			case tenant != "":
				ring, err := kf.open(cmd)
				if err != nil {
					return err
				}
				defer ring.Close()
				id = tssp.TenantIdentity(ring, tenant)
			default:
				k, err := readIdentity(identityFile)
				if err != nil {
					return err
				}
				id = tssp.RecipientIdentity(k)
			}
			p, closeFile, err := tssp.ReadFile(args[0])
			if err != nil {
				return verifyFailed(err)
			}
			defer closeFile()
			if err := tssp.OpenDir(cmd.Context(), p, trusted, id, out); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return usageError("--out: %v", err)
				}
				return verifyFailed(fmt.Errorf("%s: %w", args[0], err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "opened %s into %s (package %s, signed by %s)\n", args[0], out, p.Manifest().PackageID, p.Manifest().Signer)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&trustedFiles, "trusted-key", nil, "trusted signer public key file (repeatable)")
	f.StringVar(&identityFile, "identity", "", "recipient secret key file (tensafe keys recipient new)")
	f.StringVar(&out, "out", "", "adapter folder to create")
	f.StringVar(&tenant, "tenant", "", "open with this tenant's KEK from the keyring instead of --identity")
	kf.register(cmd)
	return cmd
}

// loadPackageAdapter is the edge loader: it verifies the package against
// the trusted keys, decrypts it in memory for the identity, checks it was
// made for this base model, and parses the adapter. Nothing touches disk.
func loadPackageAdapter(cmd *cobra.Command, path, identityFile string, trustedFiles []string, modelDir string, m *model.Model) (*model.LoRA, error) {
	trusted, err := readTrustedKeys(trustedFiles)
	if err != nil {
		return nil, err
	}
	id, err := readIdentity(identityFile)
	if err != nil {
		return nil, err
	}
	p, closeFile, err := tssp.ReadFile(path)
	if err != nil {
		return nil, verifyFailed(err)
	}
	defer closeFile()
	a, err := tssp.Load(cmd.Context(), p, trusted, tssp.RecipientIdentity(id))
	if err != nil {
		return nil, verifyFailed(fmt.Errorf("--package %s: %w", path, err))
	}
	defer clear(a.Weights)
	if h := a.Manifest.BaseModel.Hash; h != "" {
		if st, err := os.Stat(modelDir); err == nil && st.IsDir() {
			got, err := tssp.BaseModelHash(modelDir)
			if err != nil {
				return nil, err
			}
			if got != h {
				return nil, verifyFailed(fmt.Errorf("--package %s was made for base model %s (%s); --model %s hashes to %s", path, a.Manifest.BaseModel.Name, h, modelDir, got))
			}
		}
	}
	st, err := safetensors.Parse(a.Weights)
	if err != nil {
		return nil, fmt.Errorf("--package %s: adapter weights: %w", path, err)
	}
	lora, err := model.ParsePEFT(a.Config, st, m.Config)
	if err != nil {
		return nil, fmt.Errorf("--package %s: %w", path, err)
	}
	return lora, nil
}

// serverFlags are the flags of the package commands that talk to a TenSafe
// server.
type serverFlags struct {
	url, apiKey, name string
	tenantKey         bool
	trusted           []string
}

func (s *serverFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.url, "server", "", "TenSafe server URL (e.g. http://127.0.0.1:8080)")
	f.StringVar(&s.apiKey, "api-key", "", "API key (default $TENSAFE_API_KEY; prefer the variable: flags show in process lists)")
}

func (s *serverFlags) client(needKey bool) (*client.ServiceClient, error) {
	if s.url == "" {
		return nil, usageError("--server is required (the TenSafe server URL)")
	}
	key := s.apiKey
	if key == "" {
		key = os.Getenv("TENSAFE_API_KEY")
	}
	if needKey && key == "" {
		return nil, usageError("--api-key or TENSAFE_API_KEY is required")
	}
	c, err := client.New(s.url, key, client.WithUserAgent("tensafe-cli/"+version))
	if err != nil {
		return nil, usageError("--server: %v", err)
	}
	return c, nil
}

// evidenceSampling says how the evidence's batches were drawn: the
// dataset for server-poisson, the batch count otherwise.
func evidenceSampling(ev *tssp.Evidence) string {
	d := ev.Dataset
	if d.Sampling == privacy.SamplingServerPoisson {
		return fmt.Sprintf("%s: %d train_steps drawn by the server from dataset %s (%s)", d.Sampling, ev.Training.TrainSteps, d.DatasetID, d.ContentHash)
	}
	return fmt.Sprintf("%s: %d client batches (%s)", privacy.SamplingClientDeclared, d.Batches, ev.Format)
}

// verifyEvidence checks the evidence of a verified package a TenSafe server
// made: its inclusion proofs against the audit checkpoint signed by
// auditKey (without a key, against the root the package signer vouches
// for), and its agreement with the DP certificate.
func verifyEvidence(p *tssp.Package, auditKey *seal.VerifyingKey) (*tssp.Evidence, error) {
	b, err := p.Member(tssp.NameEvidence)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: the package has no evidence.json", tssp.ErrEvidence)
	}
	ev, err := tssp.ParseEvidence(b)
	if err != nil {
		return nil, err
	}
	if err := ev.VerifyAudit(auditKey); err != nil {
		return nil, err
	}
	cj, err := p.Member(tssp.NameCertificate)
	if err != nil || cj == nil {
		return ev, err
	}
	// Package.Verify has checked that the certificate parses and verifies.
	cert, err := privacy.ParseCertificate(cj)
	if err != nil {
		return nil, err
	}
	return ev, ev.CheckCertificate(cert)
}

// serverSigner fetches the server's package signing key and checks it
// against the pinned keys, if any.
func (s *serverFlags) serverSigner(ctx context.Context, c *client.ServiceClient) (*seal.VerifyingKey, error) {
	k, _, err := s.serverKeys(ctx, c)
	return k, err
}

// serverKeys is serverSigner, and also returns the audit checkpoint key the
// server publishes (nil when none).
func (s *serverFlags) serverKeys(ctx context.Context, c *client.ServiceClient) (signer, auditKey *seal.VerifyingKey, err error) {
	var pinned []*seal.VerifyingKey
	if len(s.trusted) > 0 {
		var err error
		if pinned, err = readTrustedKeys(s.trusted); err != nil {
			return nil, nil, err
		}
	}
	sg, err := c.Signer(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("server signing key: %w", err)
	}
	k, err := seal.ParseVerifyingKeyText(sg.PublicKey)
	if err != nil {
		return nil, nil, verifyFailed(fmt.Errorf("server signing key: %w", err))
	}
	if k.KeyID() != sg.KeyID {
		return nil, nil, verifyFailed(fmt.Errorf("server signing key: key id %s does not match the key (%s)", sg.KeyID, k.KeyID()))
	}
	if len(pinned) > 0 {
		for _, p := range pinned {
			if p.Equal(k) {
				return p, auditKeyOf(sg), nil
			}
		}
		return nil, nil, verifyFailed(fmt.Errorf("%w: the server signs with %s, which is not among the --trusted-key keys", tssp.ErrUntrustedSigner, k.KeyID()))
	}
	return k, auditKeyOf(sg), nil
}

// auditKeyOf parses the audit checkpoint key of a signer answer; nil when
// absent or malformed (the evidence is then checked against the root the
// package signature vouches for).
func auditKeyOf(sg *api.Signer) *seal.VerifyingKey {
	k, err := seal.ParseVerifyingKeyText(sg.AuditPublicKey)
	if err != nil {
		return nil
	}
	return k
}

// createFromArtifact is `package create --artifact`: the server packages
// the checkpoint; the package is downloaded to a temporary file beside out,
// verified against the server's (pinned) signing key, and only then linked
// to out, which is never overwritten.
// readRecipientFiles reads the recipient public key files of --recipient.
func readRecipientFiles(paths []string) ([]*seal.RecipientPublicKey, error) {
	var out []*seal.RecipientPublicKey
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--recipient: %w", err)
		}
		p, err := seal.ParseRecipientPublicKeyText(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("--recipient %s: %w", path, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func createFromArtifact(cmd *cobra.Command, s serverFlags, artifact string, recipientFiles []string, out string, asJSON bool) error {
	if out == "" {
		return usageError("--out is required")
	}
	if len(recipientFiles) == 0 && !s.tenantKey {
		return usageError("--recipient is required (a recipient public key file; give it once per recipient), or --tenant-key")
	}
	if _, err := os.Lstat(out); err == nil {
		return usageError("--out %s: %v", out, fs.ErrExist)
	}
	req := api.PackageRequest{Name: s.name}
	recipients, err := readRecipientFiles(recipientFiles)
	if err != nil {
		return err
	}
	for _, p := range recipients {
		req.Recipients = append(req.Recipients, p.String())
	}
	if s.tenantKey {
		req.Recipients = append(req.Recipients, api.RecipientTenant)
	}
	c, err := s.client(true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Minute)
	defer cancel()
	signer, auditKey, err := s.serverKeys(ctx, c)
	if err != nil {
		return err
	}
	res, err := c.PackageArtifact(ctx, artifact, req)
	if err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Field != "" {
			return fmt.Errorf("server refused the request: %w", err)
		}
		return err
	}
	if res.Signer != signer.KeyID() {
		return verifyFailed(fmt.Errorf("%w: the server says it signed with %s, its published key is %s", tssp.ErrUntrustedSigner, res.Signer, signer.KeyID()))
	}
	rc, err := c.DownloadArtifact(ctx, res.Artifact.ID)
	if err != nil {
		return fmt.Errorf("download package %s: %w", res.Artifact.ID, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(out), ".tssp-download-*")
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, io.LimitReader(rc, res.Artifact.Size+1))
	if err != nil {
		return fmt.Errorf("download package %s: %w", res.Artifact.ID, err)
	}
	if n != res.Artifact.Size {
		return fmt.Errorf("download package %s: %d bytes, the artifact has %d", res.Artifact.ID, n, res.Artifact.Size)
	}
	p, err := tssp.Read(tmp, n)
	if err != nil {
		return verifyFailed(fmt.Errorf("downloaded package: %w", err))
	}
	if err := p.Verify(ctx, []*seal.VerifyingKey{signer}); err != nil {
		return verifyFailed(fmt.Errorf("downloaded package: %w", err))
	}
	m := p.Manifest()
	if m.PackageID != res.PackageID {
		return verifyFailed(fmt.Errorf("downloaded package is %s, the server made %s", m.PackageID, res.PackageID))
	}
	ev, err := verifyEvidence(p, auditKey)
	if err != nil {
		return verifyFailed(fmt.Errorf("downloaded package: %w", err))
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	// Link, not rename: it fails when out appeared meanwhile.
	if err := os.Link(tmp.Name(), out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	w := cmd.OutOrStdout()
	if asJSON {
		return printJSON(w, map[string]any{"result": res, "manifest": m, "verified": true})
	}
	pin := "pinned"
	if len(s.trusted) == 0 {
		pin = "as published by the server; pin it with --trusted-key"
	}
	fmt.Fprintf(w, "wrote %s: package %s of checkpoint %s (artifact %s), verified: signed by %s (%s), %d recipient(s), (ε = %.4g, δ = %g) after %d steps, %d audit entries proven\n",
		out, m.PackageID, artifact, res.Artifact.ID, m.Signer, pin, len(res.Recipients), res.Epsilon, res.Delta, res.Steps, len(ev.Audit.Proofs))
	return nil
}

// newPackageSignerCmd is `tensafe package signer`: print the server's package
// signing public key, to pin it (--trusted-key) for verify, open and sample.
func newPackageSignerCmd() *cobra.Command {
	var s serverFlags
	var out string
	var auditKey bool
	cmd := &cobra.Command{
		Use:   "signer --server URL [--audit] [--out FILE]",
		Short: "Print the TenSafe server's package signing public key (to pin with --trusted-key)",
		Long: `Print the TenSafe server's package signing public key, to pin with
--trusted-key. With --audit, print instead the key that signs the server's
audit log checkpoints, for 'tensafe package verify --audit-key'. Fetching a key
from the server you are about to trust proves little: compare its key id with
one obtained out of band.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.client(false)
			if err != nil {
				return err
			}
			var k *seal.VerifyingKey
			if auditKey {
				sg, err := c.Signer(cmd.Context())
				if err != nil {
					return fmt.Errorf("server signing key: %w", err)
				}
				if sg.AuditPublicKey == "" {
					return fmt.Errorf("the server publishes no audit checkpoint key")
				}
				if k, err = seal.ParseVerifyingKeyText(sg.AuditPublicKey); err != nil {
					return verifyFailed(fmt.Errorf("audit checkpoint key: %w", err))
				}
			} else if k, err = s.serverSigner(cmd.Context(), c); err != nil {
				return err
			}
			if out != "" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				if _, err := fmt.Fprintln(f, k.String()); err != nil {
					f.Close()
					return fmt.Errorf("--out: %w", err)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: signer %s\n", out, k.KeyID())
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.String())
			return nil
		},
	}
	s.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "write the key to this file (must not exist) instead of printing it")
	cmd.Flags().BoolVar(&auditKey, "audit", false, "print the audit log's checkpoint key instead")
	return cmd
}
