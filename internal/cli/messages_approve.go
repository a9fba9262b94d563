package cli

import (
	"time"

	"github.com/cfbackup/cfbackup/pkg/approval"
)

// message_type values of the approval commands (docs/APPROVAL.md).
const (
	msgPlanWritten   = "plan_written"
	msgPlans         = "plans"
	msgPlanShow      = "plan_show"
	msgApproval      = "approval"
	msgApprovers     = "approvers"
	msgApproverAdded = "approver_added"
	msgSigningKey    = "signing_key"
)

// PlanWrittenMessage is restore --json into a protected target without --plan: the plan it wrote
// and the command the second operator runs; the run ends with exit 12.
type PlanWrittenMessage struct {
	MessageType string         `json:"message_type"` // "plan_written"
	Plan        string         `json:"plan"`
	Approve     string         `json:"approve"`
	Content     *approval.Plan `json:"content"`
	RunError
}

// PlanEntry is one plan in plans list.
type PlanEntry struct {
	ID        string    `json:"id"`
	Snapshot  string    `json:"snapshot"`
	Component string    `json:"component"`
	Targets   []string  `json:"targets"`
	Requester string    `json:"requester"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	// Approvals counts the approvals stored (valid or not: plans show checks them).
	Approvals int  `json:"approvals"`
	Used      bool `json:"used"`
	Expired   bool `json:"expired"`
}

// PlansMessage is plans list --json.
type PlansMessage struct {
	MessageType string      `json:"message_type"` // "plans"
	Plans       []PlanEntry `json:"plans"`
	RunError
}

// ApprovalStatus is one stored approval of a plan as this host judges it.
type ApprovalStatus struct {
	Approver string    `json:"approver"`
	Key      string    `json:"key"`
	Time     time.Time `json:"time"`
	Expires  time.Time `json:"expires"`
	Valid    bool      `json:"valid"`
	// Problem says why it does not count ("" when Valid).
	Problem string `json:"problem,omitempty"`
}

// PlanShowMessage is plans show --json: the plan, its approvals, and whether it can run.
type PlanShowMessage struct {
	MessageType string           `json:"message_type"` // "plan_show"
	ID          string           `json:"id"`
	SHA256      string           `json:"sha256"`
	Plan        *approval.Plan   `json:"plan"`
	Approvals   []ApprovalStatus `json:"approvals"`
	Used        bool             `json:"used"`
	Expired     bool             `json:"expired"`
	RunError
}

// ApprovalMessage is approve --json: the approval written.
type ApprovalMessage struct {
	MessageType string    `json:"message_type"` // "approval"
	Plan        string    `json:"plan"`
	Approver    string    `json:"approver"`
	Key         string    `json:"key"`
	Expires     time.Time `json:"expires"`
	RunError
}

// ApproverEntry is one registered approver.
type ApproverEntry struct {
	Name    string    `json:"name"`
	Key     string    `json:"key"`
	AddedBy string    `json:"added_by"`
	Time    time.Time `json:"time"`
	// Trusted: the registration verifies against this host's approval.trusted_keys.
	Trusted bool   `json:"trusted"`
	Problem string `json:"problem,omitempty"`
}

// ApproversMessage is approvers list --json.
type ApproversMessage struct {
	MessageType string          `json:"message_type"` // "approvers"
	Approvers   []ApproverEntry `json:"approvers"`
	RunError
}

// ApproverAddedMessage is approvers add --json.
type ApproverAddedMessage struct {
	MessageType string `json:"message_type"` // "approver_added"
	Name        string `json:"name"`
	Key         string `json:"key"`
	AddedBy     string `json:"added_by"`
	RunError
}

// SigningKeyMessage is approvers keygen --json: where the private key went and its public key.
type SigningKeyMessage struct {
	MessageType string `json:"message_type"` // "signing_key"
	File        string `json:"file"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	RunError
}
