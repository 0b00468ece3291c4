package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/perkhq/perk/internal/tenant"
)

// Demo is what <data-dir>/demo.json holds: everything needed to call the demo merchant.
type Demo struct {
	MerchantID      string `json:"merchant_id"`
	APIKey          string `json:"api_key"`
	UserTokenSecret string `json:"user_token_secret"`
	BaseURL         string `json:"base_url"`
}

// DemoPath is where the demo merchant's credentials are written.
func (a *App) DemoPath() string { return filepath.Join(a.cfg.DataDir, "demo.json") }

// seedDemo creates the demo merchant once and writes demo.json; on later starts it reuses them.
func (a *App) seedDemo(ctx context.Context, baseURL string) error {
	demo, ok := a.existingDemo(ctx)
	if !ok {
		nm, err := a.tenants.CreateMerchant(ctx, tenant.CreateMerchantParams{Name: "Demo Shop",
			TimeZone: "Asia/Shanghai", Actor: "perk-demo"})
		if err != nil {
			return fmt.Errorf("create demo merchant: %w", err)
		}
		demo = Demo{MerchantID: nm.Merchant.ID, APIKey: nm.AdminKey.Secret, UserTokenSecret: nm.TokenSecret}
	}
	demo.BaseURL = baseURL
	if err := a.seedDemoResources(ctx, demo.MerchantID); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(demo, "", "  ")
	if err != nil {
		return err
	}
	// Written whole then renamed: a reader never sees a partial file.
	if err := os.WriteFile(a.DemoPath()+".tmp", append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", a.DemoPath(), err)
	}
	if err := os.Rename(a.DemoPath()+".tmp", a.DemoPath()); err != nil {
		return fmt.Errorf("write %s: %w", a.DemoPath(), err)
	}
	fmt.Fprintf(a.stdout, "\nDemo merchant %s (credentials in %s):\n  API key:           %s\n"+
		"  user token secret: %s\n  try: curl -H 'Authorization: Bearer %s' %s/v1/me\n",
		demo.MerchantID, a.DemoPath(), demo.APIKey, demo.UserTokenSecret, demo.APIKey, baseURL)
	return nil
}

// existingDemo returns the demo of an earlier start when its key still works.
func (a *App) existingDemo(ctx context.Context) (Demo, bool) {
	raw, err := os.ReadFile(a.DemoPath())
	if err != nil {
		return Demo{}, false
	}
	var d Demo
	if json.Unmarshal(raw, &d) != nil {
		return Demo{}, false
	}
	p, err := a.tenants.Authenticate(ctx, d.APIKey)
	if err != nil || p.TenantID != d.MerchantID {
		return Demo{}, false
	}
	return d, true
}
