package config

import (
	"fmt"
	"path"
	"time"

	"github.com/cfbackup/cfbackup/pkg/approval"
	"github.com/cfbackup/cfbackup/pkg/timespec"
)

// DefaultPlanTTL is how long a restore plan stays valid when approval.plan_ttl is not set.
const DefaultPlanTTL = 24 * time.Hour

// ApprovalPolicy is the approval block, parsed (docs/APPROVAL.md).
type ApprovalPolicy struct {
	// Protected maps a component (d1, do, r2) to its protected name patterns.
	Protected   map[string][]string
	TrustedKeys []approval.PublicKey
	PlanTTL     time.Duration
	// RequireTestRestore and TestRestoreWithin (0: the restored snapshot only) are the gate.
	RequireTestRestore bool
	TestRestoreWithin  time.Duration
}

// IsProtected reports whether a restore of component into target needs approval, and the pattern
// that matched.
func (p *ApprovalPolicy) IsProtected(component, target string) (string, bool) {
	for _, pat := range p.Protected[component] {
		if ok, _ := path.Match(pat, target); ok {
			return pat, true
		}
	}
	return "", false
}

// ApprovalPolicy parses and checks the approval block; Validate calls it, so a bad pattern, key or
// duration fails every command with the key to fix.
func (c *Config) ApprovalPolicy() (*ApprovalPolicy, error) {
	a := c.Approval
	p := &ApprovalPolicy{Protected: map[string][]string{"d1": a.Protected.D1, "do": a.Protected.DO, "r2": a.Protected.R2},
		PlanTTL: DefaultPlanTTL, RequireTestRestore: a.RequireTestRestore}
	for comp, pats := range p.Protected {
		for _, pat := range pats {
			if _, err := path.Match(pat, ""); err != nil || pat == "" {
				return nil, fmt.Errorf("%w: approval.protected.%s: %q is not a name or pattern (use a name, or * ? [a-z] wildcards)", ErrInvalid, comp, pat)
			}
		}
	}
	for i, k := range a.TrustedKeys {
		pub, err := approval.ParsePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: approval.trusted_keys[%d]: %v", ErrInvalid, i, err)
		}
		p.TrustedKeys = append(p.TrustedKeys, pub)
	}
	var err error
	if a.PlanTTL != "" {
		if p.PlanTTL, err = timespec.ParseDuration(a.PlanTTL); err != nil || p.PlanTTL <= 0 {
			return nil, fmt.Errorf("%w: approval.plan_ttl %q: give a positive duration such as 24h or 2d", ErrInvalid, a.PlanTTL)
		}
	}
	if a.TestRestoreWithin != "" {
		if p.TestRestoreWithin, err = timespec.ParseDuration(a.TestRestoreWithin); err != nil {
			return nil, fmt.Errorf("%w: approval.test_restore_within %q: give a duration such as 7d", ErrInvalid, a.TestRestoreWithin)
		}
	}
	return p, nil
}
