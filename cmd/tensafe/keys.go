package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/seal"
)

// Environment variables the keys commands read.
const (
	envKeyring    = "TENSAFE_KEYRING"
	envMasterKey  = "TENSAFE_MASTER_KEY"
	envPassphrase = "TENSAFE_KEYRING_PASSPHRASE"
)

const defaultKeyringPath = "tensafe-data/keyring.tsk"

// keyringFlags say where the keyring is and how to unlock it.
type keyringFlags struct {
	path           string
	masterKeyFile  string
	passphraseFile string
}

func (f *keyringFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.path, "keyring", "", "keyring file (default $"+envKeyring+" or ./"+defaultKeyringPath+")")
	cmd.Flags().StringVar(&f.masterKeyFile, "master-key-file", "", "file holding the raw master key (tensafe-master-v1:...); default $"+envMasterKey)
	cmd.Flags().StringVar(&f.passphraseFile, "passphrase-file", "", "file holding the keyring passphrase; default $"+envPassphrase)
}

func (f *keyringFlags) keyringPath() string {
	switch {
	case f.path != "":
		return f.path
	case os.Getenv(envKeyring) != "":
		return os.Getenv(envKeyring)
	}
	return defaultKeyringPath
}

// master finds the master key: a key file, $TENSAFE_MASTER_KEY, a
// passphrase file, or $TENSAFE_KEYRING_PASSPHRASE. (No prompt: a
// passphrase typed at a terminal would need golang.org/x/term.)
func (f *keyringFlags) master() (keys.Master, error) {
	if f.masterKeyFile != "" && f.passphraseFile != "" {
		return keys.Master{}, &exitError{code: 2, err: errors.New("--master-key-file and --passphrase-file: give one, not both")}
	}
	if f.masterKeyFile != "" {
		b, err := os.ReadFile(f.masterKeyFile)
		if err != nil {
			return keys.Master{}, fmt.Errorf("--master-key-file: %w", err)
		}
		defer clear(b)
		m, err := keys.ParseMasterKey(string(b))
		if err != nil {
			return keys.Master{}, fmt.Errorf("--master-key-file %s: %w", f.masterKeyFile, err)
		}
		return m, nil
	}
	if f.passphraseFile == "" {
		if s := os.Getenv(envMasterKey); s != "" {
			m, err := keys.ParseMasterKey(s)
			if err != nil {
				return keys.Master{}, fmt.Errorf("$%s: %w", envMasterKey, err)
			}
			return m, nil
		}
	}
	var pass []byte
	switch {
	case f.passphraseFile != "":
		b, err := os.ReadFile(f.passphraseFile)
		if err != nil {
			return keys.Master{}, fmt.Errorf("--passphrase-file: %w", err)
		}
		pass = bytes.TrimRight(b, "\r\n")
	case os.Getenv(envPassphrase) != "":
		pass = []byte(os.Getenv(envPassphrase))
	default:
		return keys.Master{}, &exitError{code: 2, err: fmt.Errorf("no master key: give --master-key-file or --passphrase-file, or set $%s or $%s", envMasterKey, envPassphrase)}
	}
	defer clear(pass)
	return keys.Passphrase(pass)
}

func (f *keyringFlags) open(cmd *cobra.Command) (*keys.Keyring, error) {
	m, err := f.master()
	if err != nil {
		return nil, err
	}
	defer m.Wipe()
	return keys.OpenKeyring(cmd.Context(), f.keyringPath(), m)
}

// newKeysCmd is `tensafe keys`: the local keyring and key files.
func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Tenant key encryption keys (the local keyring), signing and recipient keys",
		Long: `Every tenant has a key encryption key (KEK) in the keyring; every artifact has its
own data key, stored only wrapped under a KEK version. The keyring is one file,
mode 0600, sealed by a master key: a passphrase (Argon2id) or a raw 32-byte key.
The master key comes from --master-key-file or $` + envMasterKey + `, from
--passphrase-file or $` + envPassphrase + `. See docs/KEYS.md.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newKeysInitCmd(), newKeysRotateCmd(), newKeysRetireCmd(), newKeysShredCmd(),
		newKeysListCmd(), newKeysSignerCmd(), newKeysRecipientCmd())
	return cmd
}

func newKeysInitCmd() *cobra.Command {
	var kf keyringFlags
	var newMaster string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create an empty keyring",
		Long: `Create an empty keyring file (mode 0600). With --new-master-key FILE a random
master key is generated, written to FILE (mode 0600) and used to seal the
keyring; keep FILE apart from the keyring and its backups.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var m keys.Master
			if newMaster != "" {
				if kf.masterKeyFile != "" || kf.passphraseFile != "" {
					return &exitError{code: 2, err: errors.New("--new-master-key cannot be combined with --master-key-file or --passphrase-file")}
				}
				text, err := keys.GenerateMasterKey()
				if err != nil {
					return err
				}
				if m, err = keys.ParseMasterKey(text); err != nil {
					return err
				}
				if err := writeNewFile(newMaster, []byte(text+"\n"), 0o600); err != nil {
					return fmt.Errorf("--new-master-key: %w", err)
				}
			} else {
				var err error
				if m, err = kf.master(); err != nil {
					return err
				}
			}
			defer m.Wipe()
			k, err := keys.CreateKeyring(cmd.Context(), kf.keyringPath(), m, nil)
			if err != nil {
				return err
			}
			defer k.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "created keyring %s\n", k.Path())
			if newMaster != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "master key written to %s\n", newMaster)
			}
			return nil
		},
	}
	kf.register(cmd)
	cmd.Flags().StringVar(&newMaster, "new-master-key", "", "generate a raw master key into this file (must not exist) and seal the keyring with it")
	return cmd
}

func newKeysRotateCmd() *cobra.Command {
	var kf keyringFlags
	cmd := &cobra.Command{
		Use:   "rotate TENANT",
		Short: "Give a tenant a new KEK version (created if the tenant has none)",
		Long: `Add a new KEK version for TENANT and make it current. New data keys are wrapped
under it; data keys wrapped under older versions still unwrap until those
versions are retired. A tenant without a KEK gets version 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := kf.open(cmd)
			if err != nil {
				return err
			}
			defer k.Close()
			v, err := k.Rotate(cmd.Context(), args[0])
			if errors.Is(err, keys.ErrUnknownTenant) {
				if err = k.AddTenant(cmd.Context(), args[0]); err == nil {
					v = 1
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: current KEK version %d\n", keys.KeyIDFor(args[0]), v)
			return nil
		},
	}
	kf.register(cmd)
	return cmd
}

func newKeysRetireCmd() *cobra.Command {
	var kf keyringFlags
	cmd := &cobra.Command{
		Use:   "retire TENANT VERSION",
		Short: "Destroy an old KEK version (re-wrap its data keys first)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.ParseUint(args[1], 10, 32)
			if err != nil || v == 0 {
				return &exitError{code: 2, err: fmt.Errorf("VERSION %q: want a positive integer", args[1])}
			}
			k, err := kf.open(cmd)
			if err != nil {
				return err
			}
			defer k.Close()
			if err := k.Retire(cmd.Context(), args[0], uint32(v)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: KEK version %d retired\n", keys.KeyIDFor(args[0]), v)
			return nil
		},
	}
	kf.register(cmd)
	return cmd
}

func newKeysShredCmd() *cobra.Command {
	var kf keyringFlags
	var yes bool
	cmd := &cobra.Command{
		Use:   "shred TENANT --yes",
		Short: "Destroy every KEK of a tenant: all of its artifacts become unreadable",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return &exitError{code: 2, err: errors.New("shredding cannot be undone: add --yes")}
			}
			k, err := kf.open(cmd)
			if err != nil {
				return err
			}
			defer k.Close()
			if err := k.Shred(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: shredded\n", keys.KeyIDFor(args[0]))
			return nil
		},
	}
	kf.register(cmd)
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm that the tenant's data is to become unreadable")
	return cmd
}

func newKeysListCmd() *cobra.Command {
	var kf keyringFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tenants and KEK versions (never key material)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := kf.open(cmd)
			if err != nil {
				return err
			}
			defer k.Close()
			list, err := k.List(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				e := json.NewEncoder(out)
				e.SetIndent("", "  ")
				return e.Encode(keyringJSON(list))
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tKEY ID\tVERSION\tCREATED\tSTATE")
			for _, t := range list {
				for _, v := range t.Versions {
					state := "active"
					switch {
					case !t.Shredded.IsZero():
						state = "shredded " + t.Shredded.Format(time.RFC3339)
					case !v.Retired.IsZero():
						state = "retired " + v.Retired.Format(time.RFC3339)
					case v.Version == t.Current:
						state = "current"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", t.Tenant, t.KeyID, v.Version, v.Created.Format(time.RFC3339), state)
				}
			}
			return tw.Flush()
		},
	}
	kf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// keyringJSON is the `keys list --json` form: RFC 3339 times, omitted
// when unset.
func keyringJSON(list []keys.TenantInfo) any {
	type version struct {
		Version uint32 `json:"version"`
		Created string `json:"created"`
		Retired string `json:"retired,omitempty"`
	}
	type tenant struct {
		Tenant   string    `json:"tenant"`
		KeyID    string    `json:"key_id"`
		Current  uint32    `json:"current"`
		Shredded string    `json:"shredded,omitempty"`
		Versions []version `json:"versions"`
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	out := []tenant{}
	for _, t := range list {
		jt := tenant{Tenant: t.Tenant, KeyID: t.KeyID, Current: t.Current, Shredded: ts(t.Shredded)}
		for _, v := range t.Versions {
			jt.Versions = append(jt.Versions, version{v.Version, ts(v.Created), ts(v.Retired)})
		}
		out = append(out, jt)
	}
	return out
}

func newKeysSignerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "signer",
		Short: "Hybrid Ed25519 + ML-DSA-65 signing keys",
		Args:  cobra.NoArgs,
	}
	var out string
	newCmd := &cobra.Command{
		Use:   "new --out PREFIX",
		Short: "Generate a signing key: PREFIX.sec (secret, mode 0600) and PREFIX.pub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &exitError{code: 2, err: errors.New("--out: a file prefix is required")}
			}
			k, err := seal.GenerateSigningKey(nil)
			if err != nil {
				return err
			}
			sec, _ := k.MarshalText()
			defer clear(sec)
			pub := k.Public().String()
			if err := writeKeyPair(out, sec, pub); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n", k.Public().KeyID(), pub)
			return nil
		},
	}
	newCmd.Flags().StringVar(&out, "out", "", "write PREFIX.sec and PREFIX.pub (neither may exist)")
	cmd.AddCommand(newCmd)
	return cmd
}

func newKeysRecipientCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recipient",
		Short: "Hybrid X25519 + ML-KEM-768 (X-Wing) recipient keys, for encrypting packages to",
		Args:  cobra.NoArgs,
	}
	var out string
	newCmd := &cobra.Command{
		Use:   "new --out PREFIX",
		Short: "Generate a recipient key: PREFIX.sec (secret, mode 0600) and PREFIX.pub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &exitError{code: 2, err: errors.New("--out: a file prefix is required")}
			}
			k, err := seal.GenerateRecipientKey()
			if err != nil {
				return err
			}
			sec, _ := k.MarshalText()
			defer clear(sec)
			pub := k.Public().String()
			if err := writeKeyPair(out, sec, pub); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n", k.Public().KeyID(), pub)
			return nil
		},
	}
	newCmd.Flags().StringVar(&out, "out", "", "write PREFIX.sec and PREFIX.pub (neither may exist)")
	cmd.AddCommand(newCmd)
	return cmd
}

// writeKeyPair writes PREFIX.sec (0600) and PREFIX.pub (0644); it refuses
// to replace either file, and leaves neither behind when one fails.
func writeKeyPair(prefix string, sec []byte, pub string) error {
	secPath, pubPath := prefix+".sec", prefix+".pub"
	for _, p := range []string{secPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("--out: %s already exists", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--out: %w", err)
		}
	}
	if dir := filepath.Dir(prefix); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	if err := writeNewFile(secPath, append(bytes.Clone(sec), '\n'), 0o600); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := writeNewFile(pubPath, []byte(pub+"\n"), 0o644); err != nil {
		os.Remove(secPath)
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// writeNewFile creates path with mode perm, failing if it exists.
func writeNewFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
