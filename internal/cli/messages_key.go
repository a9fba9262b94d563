package cli

import "github.com/cfbackup/cfbackup/pkg/repo"

// Message types of the key rotation commands.
const (
	msgKeyList         = "key_list"
	msgKeyRecipients   = "key_recipients"
	msgKeyRewrap       = "key_rewrap"
	msgKeyRotateWriter = "key_rotate_writer"
)

// KeyListRecipient is one recipient in `key list --json`.
type KeyListRecipient struct {
	// Recipient is the age public key ("age1…").
	Recipient string `json:"recipient"`
	// Fingerprint names it ("sha256:…"; remove-recipient accepts it).
	Fingerprint string `json:"fingerprint"`
	// Matches: the --identity-file given decrypts what is encrypted to this recipient.
	Matches bool `json:"matches"`
}

// KeyListMessage is what `key list --json` prints: the recipients every new segment is encrypted to
// and the writer key id a host can pin.
type KeyListMessage struct {
	// MessageType is "key_list".
	MessageType string `json:"message_type"`
	// Repository is the repository's location.
	Repository string `json:"repository"`
	// ID is the repository id.
	ID string `json:"id"`
	// Recipients in config.json order.
	Recipients []KeyListRecipient `json:"recipients"`
	// KeyID is the writer secret's key id ("wk:…", CFBACKUP_REPOSITORY_KEY_ID); empty when this host
	// holds no key.
	KeyID string `json:"key_id,omitempty"`
	// IdentityChecked: --identity-file was given, so "matches" is meaningful.
	IdentityChecked bool `json:"identity_checked"`
	// RotationPending names an unfinished rewrap or writer rotation (its journal object), if any.
	RotationPending []string `json:"rotation_pending"`
}

// KeyRecipientsMessage is what `key add-recipient` and `key remove-recipient` print (the latter also
// with --rewrap, then Rewrap is set).
type KeyRecipientsMessage struct {
	// MessageType is "key_recipients".
	MessageType string `json:"message_type"`
	// Action is "add" or "remove".
	Action string `json:"action"`
	// Changed is the recipient added or removed.
	Changed repo.Recipient `json:"changed"`
	// Recipients is the new set.
	Recipients []repo.Recipient `json:"recipients"`
	// Rewrap is what --rewrap did (absent without it).
	Rewrap *repo.RewrapResult `json:"rewrap,omitempty"`
	RunError
}

// KeyRewrapMessage is what `key rewrap --json` prints.
type KeyRewrapMessage struct {
	// MessageType is "key_rewrap".
	MessageType string `json:"message_type"`
	// Recipients is the set every object is now wrapped to.
	Recipients []repo.Recipient `json:"recipients"`
	// Result counts objects, bytes and Object Lock skips.
	Result *repo.RewrapResult `json:"result"`
	// Seconds is the wall time.
	Seconds float64 `json:"seconds"`
	RunError
}

// KeyRotateWriterMessage is what `key rotate-writer --json` prints. The secret itself never is.
type KeyRotateWriterMessage struct {
	// MessageType is "key_rotate_writer".
	MessageType string `json:"message_type"`
	// WriterKeyFile is where the new writer secret was written (mode 0600).
	WriterKeyFile string `json:"writer_key_file"`
	// Result has the old and new key ids (pin the new one: CFBACKUP_REPOSITORY_KEY_ID) and counts.
	Result *repo.RotateWriterResult `json:"result"`
	// Seconds is the wall time.
	Seconds float64 `json:"seconds"`
}
