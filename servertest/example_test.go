package servertest_test

import (
	"testing"

	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/server"
	"github.com/tensafe/tensafe/servertest"
	"github.com/tensafe/tensafe/store"
)

// A test of SDK code against a real server: a tenant, a trainer key and a
// client of it. (servertest.New takes the test's testing.TB, so this
// example is compiled, not run.)
func ExampleNew() {
	test := func(t *testing.T) {
		s := servertest.New(t, servertest.WithServerConfig(func(c *server.Config) { c.MaxBodyBytes = 1 << 20 }))
		c, err := client.New(s.URL, s.Key(t, s.Tenant(t, "acme"), store.RoleTrainer))
		if err != nil {
			t.Fatal(err)
		}
		arts, err := c.Artifacts(t.Context())
		if err != nil || len(arts) != 0 {
			t.Fatalf("a new tenant has artifacts %v (%v)", arts, err)
		}
	}
	_ = test
}
