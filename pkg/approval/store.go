package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// maxRecord bounds what is read of one plan, approval or approver record (they are well under 4 KiB).
const maxRecord = 64 << 10

func readRecord(ctx context.Context, st store.Store, key string) ([]byte, error) {
	rc, err := st.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxRecord+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxRecord {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a record cfbackup wrote", key, maxRecord)
	}
	return b, nil
}

// create writes b at key with a conditional create; the same bytes already there count as written.
func create(ctx context.Context, st store.Store, key string, b []byte) error {
	err := st.Put(ctx, key, bytes.NewReader(b), store.PutOptions{IfNotExists: true})
	if errors.Is(err, store.ErrExists) {
		if old, rerr := readRecord(ctx, st, key); rerr == nil && bytes.Equal(old, b) {
			return nil
		}
	}
	return err
}

// PutPlan stores p under plans/ (conditional create) and returns its id.
func PutPlan(ctx context.Context, st store.Store, p *Plan) (string, error) {
	id := p.ID()
	if err := create(ctx, st, layout.PlanKey(id), append(p.Canonical(), '\n')); err != nil {
		return "", fmt.Errorf("store restore plan %s: %w", id, err)
	}
	return id, nil
}

// GetPlan reads plan id and checks that it hashes to its id: a plan edited in the bucket is not found.
func GetPlan(ctx context.Context, st store.Store, id string) (*Plan, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %q is not a plan id (%d hex digits, printed by the restore that wrote it; 'cfbackup plans list')", ErrPlanNotFound, id, IDLength)
	}
	b, err := readRecord(ctx, st, layout.PlanKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no plan %s in this repository ('cfbackup plans list')", ErrPlanNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: plan %s is not valid JSON: %v", ErrPlanNotFound, id, err)
	}
	if p.ID() != id {
		return nil, fmt.Errorf("%w: plan %s was changed after it was written (it hashes to %s); any approval of it is void", ErrPlanChanged, id, p.ID())
	}
	return &p, nil
}

// Used reports whether plan id was already carried out.
func Used(ctx context.Context, st store.Store, id string) (bool, error) {
	_, err := st.Stat(ctx, layout.PlanUsedKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// MarkUsed records that plan id is being carried out; a second use is refused (conditional create).
func MarkUsed(ctx context.Context, st store.Store, id, actor string, now time.Time) error {
	b, _ := json.Marshal(map[string]any{"plan": id, "actor": actor, "time": now.UTC()})
	err := st.Put(ctx, layout.PlanUsedKey(id), bytes.NewReader(append(b, '\n')), store.PutOptions{IfNotExists: true})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("%w: plan %s was already carried out; write a new plan (rerun the restore without --plan)", ErrPlanExpired, id)
	}
	return err
}

// ListPlans lists the stored plans' ids, oldest key first (lexical).
func ListPlans(ctx context.Context, st store.Store) ([]string, error) {
	var ids []string
	err := st.List(ctx, layout.Plans, func(oi store.ObjectInfo) error {
		name, ok := strings.CutSuffix(strings.TrimPrefix(oi.Key, layout.Plans), layout.JSONSuffix)
		if ok && ValidID(name) {
			ids = append(ids, name)
		}
		return nil
	})
	return ids, err
}

// PutApproval stores a (conditional create).
func PutApproval(ctx context.Context, st store.Store, a *Approval) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	return create(ctx, st, layout.ApprovalKey(a.Plan, a.Approver, a.Time), append(b, '\n'))
}

// ListApprovals reads every approval stored for plan id (unverified; Check verifies).
func ListApprovals(ctx context.Context, st store.Store, id string) ([]Approval, error) {
	var out []Approval
	err := st.List(ctx, layout.ApprovalPrefix(id), func(oi store.ObjectInfo) error {
		if !strings.HasSuffix(oi.Key, layout.JSONSuffix) {
			return nil
		}
		b, err := readRecord(ctx, st, oi.Key)
		if err != nil {
			return err
		}
		var a Approval
		if json.Unmarshal(b, &a) == nil {
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// PutApprover stores a registration; a name already registered is refused (records are never
// rewritten: register another name, and unpin a compromised admin key on restore hosts).
func PutApprover(ctx context.Context, st store.Store, a *Approver) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	err = st.Put(ctx, layout.ApproverKey(a.Name), bytes.NewReader(append(b, '\n')), store.PutOptions{IfNotExists: true})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("%w: approver %q is already registered; choose another name", ErrBadName, a.Name)
	}
	return err
}

// ListApprovers reads every registration (unverified; Approver.Verify checks one).
func ListApprovers(ctx context.Context, st store.Store) ([]Approver, error) {
	var out []Approver
	err := st.List(ctx, layout.Approvers, func(oi store.ObjectInfo) error {
		if !strings.HasSuffix(oi.Key, layout.JSONSuffix) {
			return nil
		}
		b, err := readRecord(ctx, st, oi.Key)
		if err != nil {
			return err
		}
		var a Approver
		if json.Unmarshal(b, &a) == nil {
			out = append(out, a)
		}
		return nil
	})
	return out, err
}
