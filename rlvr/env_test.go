package rlvr_test

import (
	"testing"
	"time"

	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/server"
	"github.com/tensafe/tensafe/servertest"
	"github.com/tensafe/tensafe/store"
)

// newServer starts a real TenSafe server (servertest: SQLite store, audit
// log, keyring, service, HTTP layer on a loopback listener; no bound on a
// tenant's queued operations) and returns an SDK client with a trainer key
// of a fresh tenant.
func newServer(t testing.TB) *client.ServiceClient {
	t.Helper()
	s := servertest.New(t, servertest.WithOrigin("tensafe.test/rlvr"),
		servertest.WithServerConfig(func(c *server.Config) { c.MaxTenantOps = -1 }))
	c, err := client.New(s.URL, s.Key(t, s.Tenant(t, "rl"), store.RoleTrainer), client.WithPollWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
