package marketplace

import (
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/vectabase/vectabase/store"
)

// PlanFree is the plan a lapsed subscription falls back to. PLAN_LIMITS
// must name it.
const PlanFree = "free"

// DefaultPlanLimits are the per-minute limits of PLAN_LIMITS's default.
var DefaultPlanLimits = map[string]int{PlanFree: 60, "pro": 600}

// Plans turns a developer's subscription into rate limits.
//
// How a plan combines with a key's own rateLimitPerMinute: the plan caps
// it. A key's effective limit is min(key's rateLimitPerMinute, the plan's
// limit), so a developer can still hold one key lower than their plan,
// and no key can go past what the plan pays for. A developer without any
// subscription row has the plan PLAN_DEFAULT; when that is unset (the
// default) their keys keep their own limits, as before plans existed.
//
// The plan in force is computed from the subscription's status and
// current_period_end on every request (no timer): active and trialing
// subscriptions give their plan; any other status (past_due, canceled,
// unpaid, paused) keeps the plan until current_period_end and gives the
// free plan after it; incomplete and incomplete_expired (never paid) give
// the free plan at once. A plan PLAN_LIMITS does not name gives the free
// plan's limit.
type Plans struct {
	Limits  map[string]int
	Default string
}

// NewPlans checks limits (nil: DefaultPlanLimits) and def.
func NewPlans(limits map[string]int, def string) (Plans, error) {
	if len(limits) == 0 {
		limits = DefaultPlanLimits
	}
	if _, ok := limits[PlanFree]; !ok {
		return Plans{}, fmt.Errorf("marketplace: PLAN_LIMITS must name the %q plan", PlanFree)
	}
	for name, n := range limits {
		if name == "" || n < 1 || n > maxRate {
			return Plans{}, fmt.Errorf("marketplace: PLAN_LIMITS: plan %q: limit must be 1 to %d", name, maxRate)
		}
	}
	if _, ok := limits[def]; def != "" && !ok {
		return Plans{}, fmt.Errorf("marketplace: PLAN_DEFAULT %q is not in PLAN_LIMITS", def)
	}
	return Plans{Limits: limits, Default: def}, nil
}

// InForce returns the plan sub gives at now ("" when none applies: no
// subscription and no PLAN_DEFAULT).
func (p Plans) InForce(sub *store.Subscription, now time.Time) string {
	if sub == nil {
		return p.Default
	}
	plan := sub.Plan
	switch sub.Status {
	case "active", "trialing":
	case "incomplete", "incomplete_expired":
		plan = PlanFree
	default:
		if sub.CurrentPeriodEnd == nil || !now.Before(*sub.CurrentPeriodEnd) {
			plan = PlanFree
		}
	}
	if _, ok := p.Limits[plan]; !ok {
		plan = PlanFree
	}
	return plan
}

// PlanLimit is the per-minute limit of the plan in force (0: none).
func (p Plans) PlanLimit(sub *store.Subscription, now time.Time) int {
	plan := p.InForce(sub, now)
	if plan == "" {
		return 0
	}
	return p.Limits[plan]
}

// Effective is a key's limit under the plan in force.
func (p Plans) Effective(keyLimit int, sub *store.Subscription, now time.Time) int {
	if pl := p.PlanLimit(sub, now); pl > 0 && pl < keyLimit {
		return pl
	}
	return keyLimit
}

// SubscriptionResult is the body of GET /api/developer/subscription.
// Plan, Status and CurrentPeriodEnd are the recorded subscription's (null
// when there is none); EffectivePlan and Limits are what is in force now.
type SubscriptionResult struct {
	Plan             *string    `json:"plan"`
	Status           *string    `json:"status"`
	CurrentPeriodEnd *time.Time `json:"currentPeriodEnd"`
	EffectivePlan    *string    `json:"effectivePlan"`
	Limits           PlanLimits `json:"limits"`
}

// PlanLimits are the limits in force. RateLimitPerMinute caps every key of
// the developer (a key's own lower limit stands); null when no plan
// applies and each key keeps its own.
type PlanLimits struct {
	RateLimitPerMinute *int `json:"rateLimitPerMinute"`
}

func (s *Service) handleSubscription(a Auth) fiber.Handler {
	return func(c *fiber.Ctx) error {
		sub, now, err := s.repo.DeveloperSubscription(c.UserContext(), a.UserID(c))
		if err != nil {
			return err
		}
		var out SubscriptionResult
		if sub != nil {
			out.Plan, out.Status = &sub.Plan, &sub.Status
			if sub.CurrentPeriodEnd != nil {
				t := sub.CurrentPeriodEnd.UTC()
				out.CurrentPeriodEnd = &t
			}
		}
		if plan := s.plans.InForce(sub, now); plan != "" {
			n := s.plans.Limits[plan]
			out.EffectivePlan, out.Limits.RateLimitPerMinute = &plan, &n
		}
		return c.JSON(out)
	}
}
