package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Message is a message to publish.
type Message struct {
	// Subject is where it goes; build it with Bus.Subject.
	Subject string
	// ID becomes the Nats-Msg-Id header: JetStream drops a second message with the same ID inside
	// the stream's de-duplication window, and ConsumeTx records it as processed. Empty means no
	// de-duplication.
	ID string
	// Data is the payload.
	Data []byte
	// Header holds extra headers.
	Header map[string]string
}

// BatchError says which messages of a PublishBatch were not acknowledged. Errs is aligned with the
// batch: nil at index i means message i is durable on the stream.
type BatchError struct {
	Errs []error
}

// Error implements error.
func (e *BatchError) Error() string {
	failed, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	return fmt.Sprintf("bus: %d of %d messages not acknowledged; first: %v", failed, len(e.Errs), first)
}

// Unwrap returns the per-message errors.
func (e *BatchError) Unwrap() []error { return e.Errs }

var errNoSubject = errors.New("bus: message has no subject")

// Publish sends one message and waits until JetStream has stored it: a nil error means durable.
func (b *Bus) Publish(ctx context.Context, m Message) error {
	_, err := b.publish(ctx, m)
	return err
}

func (b *Bus) publish(ctx context.Context, m Message) (*jetstream.PubAck, error) {
	if m.Subject == "" {
		return nil, errNoSubject
	}
	ack, err := b.js.PublishMsg(ctx, toNats(m), publishOpts(m)...)
	b.metrics.countPublish(b.streamLabel(m.Subject), ack != nil && ack.Duplicate, err)
	if err != nil {
		return nil, fmt.Errorf("bus: publish %s: %w", m.Subject, err)
	}
	return ack, nil
}

// PublishBatch sends many messages without waiting for each acknowledgement in turn (at most
// Options.MaxPendingAsync in flight) and returns when every one is acknowledged or has failed.
// When some fail it returns a *BatchError saying which; the others are durable.
func (b *Bus) PublishBatch(ctx context.Context, msgs []Message) error {
	_, err := b.PublishBatchResults(ctx, msgs)
	return err
}

func toNats(m Message) *nats.Msg {
	msg := &nats.Msg{Subject: m.Subject, Data: m.Data}
	if len(m.Header) > 0 {
		msg.Header = make(nats.Header, len(m.Header)+1)
		for k, v := range m.Header {
			msg.Header.Set(k, v)
		}
	}
	return msg
}

func publishOpts(m Message) []jetstream.PublishOpt {
	if m.ID == "" {
		return nil
	}
	return []jetstream.PublishOpt{jetstream.WithMsgID(m.ID)}
}

func (b *Bus) streamLabel(subject string) string {
	if s, ok := b.streamOf(subject); ok {
		return string(s)
	}
	return "other"
}
