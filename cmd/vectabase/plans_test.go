package main

import (
	"testing"
)

// TestPlanVariablesParse: PLAN_LIMITS, PLAN_DEFAULT and STRIPE_PLAN_PRICES
// parse as the README says, their defaults hold, and a plan set that
// cannot work is refused before anything starts.
func TestPlanVariablesParse(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig(map[string]string{})
	if err != nil {
		t.Fatalf("parseConfig({}) err = %v", err)
	}
	if l := cfg.Marketplace.PlanLimits; len(l) != 2 || l["free"] != 60 || l["pro"] != 600 || cfg.Marketplace.PlanDefault != "" {
		t.Fatalf("default plans = %v %q, want free:60,pro:600 and no default", l, cfg.Marketplace.PlanDefault)
	}
	if err := cfg.Marketplace.Validate(); err != nil {
		t.Fatalf("default plans refused: %v", err)
	}
	cfg, err = parseConfig(map[string]string{
		"PLAN_LIMITS": "free:30,pro:900,team:5000", "PLAN_DEFAULT": "free",
		"STRIPE_PLAN_PRICES": "price_A:pro,price_B:team",
	})
	if err != nil {
		t.Fatalf("parseConfig err = %v", err)
	}
	if l := cfg.Marketplace.PlanLimits; l["free"] != 30 || l["pro"] != 900 || l["team"] != 5000 || cfg.Marketplace.PlanDefault != "free" {
		t.Fatalf("plans = %v %q", l, cfg.Marketplace.PlanDefault)
	}
	if p := cfg.Stripe.PlanPrices; p["price_A"] != "pro" || p["price_B"] != "team" {
		t.Fatalf("STRIPE_PLAN_PRICES = %v", p)
	}
	for _, bad := range []map[string]string{
		{"PLAN_LIMITS": "pro:600"},                      // no free plan
		{"PLAN_LIMITS": "free:0"},                       // a limit of nothing
		{"PLAN_LIMITS": "free:60", "PLAN_DEFAULT": "x"}, // a default that is no plan
	} {
		cfg, err := parseConfig(bad)
		if err == nil {
			err = cfg.Marketplace.Validate()
		}
		if err == nil {
			t.Errorf("%v accepted, want an error", bad)
		}
	}
	if _, err := parseConfig(map[string]string{"PLAN_LIMITS": "free:sixty"}); err == nil {
		t.Error("PLAN_LIMITS=free:sixty parsed, want an error")
	}
}
