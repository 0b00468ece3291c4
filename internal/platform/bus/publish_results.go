package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// PublishResult is the outcome of one message of PublishBatchResults.
type PublishResult struct {
	// Duplicate is set when JetStream acknowledged the message as a repeat of a Nats-Msg-Id it
	// stored inside the stream's de-duplication window: the message is durable (from before) and
	// was not stored again.
	Duplicate bool
	// Err is nil when the message is durable on the stream.
	Err error
}

// PublishBatchResults is PublishBatch telling each message's outcome: results is aligned with
// msgs, and says which were stored, which JetStream dropped as duplicates inside its window, and
// which failed. The error is a *BatchError when at least one failed (the others are durable), as
// with PublishBatch.
func (b *Bus) PublishBatchResults(ctx context.Context, msgs []Message) ([]PublishResult, error) {
	results := make([]PublishResult, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		switch {
		case ctx.Err() != nil:
			results[i].Err = ctx.Err()
		case m.Subject == "":
			results[i].Err = errNoSubject
		default:
			opts := append(publishOpts(m), jetstream.WithStallWait(b.opts.PublishTimeout))
			futures[i], results[i].Err = b.js.PublishMsgAsync(toNats(m), opts...)
		}
	}
	failed := false
	for i, f := range futures {
		r := &results[i]
		if f != nil {
			select {
			case ack := <-f.Ok():
				r.Duplicate = ack.Duplicate
			case r.Err = <-f.Err():
			case <-ctx.Done():
				r.Err = ctx.Err()
			}
		}
		b.metrics.countPublish(b.streamLabel(msgs[i].Subject), r.Duplicate, r.Err)
		if r.Err != nil {
			r.Err = fmt.Errorf("bus: publish %s: %w", msgs[i].Subject, r.Err)
			failed = true
		}
	}
	if !failed {
		return results, nil
	}
	errs := make([]error, len(results))
	for i, r := range results {
		errs[i] = r.Err
	}
	return results, &BatchError{Errs: errs}
}
