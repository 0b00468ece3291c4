package ingest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perkhq/perk/internal/ingest"
	"github.com/perkhq/perk/internal/platform/bus/bustest"
	"github.com/perkhq/perk/internal/platform/problem"
)

// badEvents break one rule each: the reason and the field a single-event request names.
var badEvents = []struct {
	name   string
	event  string
	reason string
	field  string
}{
	{"not an object", `"checkin"`, ingest.ReasonMalformed, "body"},
	{"null", `null`, ingest.ReasonMalformed, "body"},
	{"too large", event("big", "data", map[string]any{"pad": strings.Repeat("x", 64<<10)}), ingest.ReasonTooLarge, "body"},
	{"no specversion", event("e", "specversion", nil), ingest.ReasonMissingAttribute, "body.specversion"},
	{"specversion 0.3", event("e", "specversion", "0.3"), ingest.ReasonInvalidAttribute, "body.specversion"},
	{"no id", event("e", "id", nil), ingest.ReasonMissingAttribute, "body.id"},
	{"empty id", event(""), ingest.ReasonMissingAttribute, "body.id"},
	{"id too long", event(strings.Repeat("i", 129)), ingest.ReasonInvalidAttribute, "body.id"},
	{"id with a control character", event("a\tb"), ingest.ReasonInvalidAttribute, "body.id"},
	{"id is a number", event("e", "id", 42), ingest.ReasonInvalidAttribute, "body.id"},
	{"no source", event("e", "source", nil), ingest.ReasonMissingAttribute, "body.source"},
	{"source with a space", event("e", "source", "/shop orders"), ingest.ReasonInvalidAttribute, "body.source"},
	{"source not a URI", event("e", "source", "http://[::1"), ingest.ReasonInvalidAttribute, "body.source"},
	{"source too long", event("e", "source", "/"+strings.Repeat("s", 256)), ingest.ReasonInvalidAttribute, "body.source"},
	{"no type", event("e", "type", nil), ingest.ReasonMissingAttribute, "body.type"},
	{"type upper case", event("e", "type", "Order.Paid"), ingest.ReasonInvalidAttribute, "body.type"},
	{"type reverse dns with dash", event("e", "type", "com.shop.order-paid"), ingest.ReasonInvalidAttribute, "body.type"},
	{"type empty token", event("e", "type", "order..paid"), ingest.ReasonInvalidAttribute, "body.type"},
	{"type trailing dot", event("e", "type", "order."), ingest.ReasonInvalidAttribute, "body.type"},
	{"type wildcard", event("e", "type", "order.>"), ingest.ReasonInvalidAttribute, "body.type"},
	{"type too long", event("e", "type", strings.Repeat("t", 65)), ingest.ReasonInvalidAttribute, "body.type"},
	{"no subject", event("e", "subject", nil), ingest.ReasonMissingAttribute, "body.subject"},
	{"subject with a space", event("e", "subject", "u 1"), ingest.ReasonInvalidAttribute, "body.subject"},
	{"subject too long", event("e", "subject", strings.Repeat("u", 129)), ingest.ReasonInvalidAttribute, "body.subject"},
	{"time not RFC 3339", event("e", "time", "10/03/2026"), ingest.ReasonInvalidAttribute, "body.time"},
	{"time is a number", event("e", "time", 1773133200), ingest.ReasonInvalidAttribute, "body.time"},
	{"datacontenttype xml", event("e", "datacontenttype", "application/xml"), ingest.ReasonInvalidData, "body.datacontenttype"},
	{"data is a string", event("e", "data", "amount=1"), ingest.ReasonInvalidData, "body.data"},
	{"data is an array", event("e", "data", []int{1}), ingest.ReasonInvalidData, "body.data"},
	{"data_base64", event("e", "data", nil, "data_base64", "eyJhIjoxfQ=="), ingest.ReasonInvalidData, "body.data_base64"},
	{"too late", event("e", "time", "2026-03-03T08:59:59Z"), ingest.ReasonTooLate, "body.time"},
	{"in the future", event("e", "time", "2026-03-10T09:05:01Z"), ingest.ReasonInFuture, "body.time"},
}

func TestSingleEventValidation(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		for _, tc := range badEvents {
			t.Run(tc.name, func(t *testing.T) {
				p := b.refused(t, ingest.ContentTypeEvent, tc.event, problem.KindInvalid)
				require.Equal(t, tc.reason, p.Extensions["reason"])
				require.NotEmpty(t, p.Fields)
				require.Equal(t, tc.field, p.Fields[0].Path, p.Error())
			})
		}
		require.Zero(t, b.stored(t), "nothing was published")
		// the first two are not events at all: the request is refused before there are events to count
		require.EqualValues(t, len(badEvents)-2, b.counted(ingest.StatusRejected, ingest.ReasonInvalidAttribute)+
			b.counted(ingest.StatusRejected, ingest.ReasonMissingAttribute)+b.counted(ingest.StatusRejected, ingest.ReasonInvalidData)+
			b.counted(ingest.StatusRejected, ingest.ReasonMalformed)+b.counted(ingest.StatusRejected, ingest.ReasonTooLarge)+
			b.counted(ingest.StatusRejected, ingest.ReasonTooLate)+b.counted(ingest.StatusRejected, ingest.ReasonInFuture))
	})
}

func TestSeveralProblemsAreAllNamed(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		p := b.refused(t, ingest.ContentTypeEvent, event("e", "subject", nil, "type", "Nope", "time", "yesterday"), problem.KindInvalid)
		require.Equal(t, ingest.ReasonInvalidAttribute, p.Extensions["reason"], "the first problem's reason leads")
		var paths []string
		for _, f := range p.Fields {
			paths = append(paths, f.Path)
		}
		require.Equal(t, []string{"body.type", "body.subject", "body.time"}, paths)
		require.Contains(t, p.Detail, "subject: is required")
	})
}

func TestBatchRejectsBadEventsAndPublishesTheRest(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		events := make([]string, 0, 2*len(badEvents))
		for i, tc := range badEvents {
			events = append(events, tc.event, event(fmt.Sprint("good-", i)))
		}
		res := b.accept(t, ingest.ContentTypeBatch, batchOf(events...))
		require.Equal(t, len(badEvents), res.Accepted)
		require.Equal(t, len(badEvents), res.Rejected)
		for i, tc := range badEvents {
			bad, good := res.Results[2*i], res.Results[2*i+1]
			require.Equal(t, 2*i, bad.Index)
			require.Equal(t, ingest.StatusRejected, bad.Status, tc.name)
			require.Equal(t, tc.reason, bad.Reason, tc.name)
			require.NotEmpty(t, bad.Detail, tc.name)
			require.Equal(t, ingest.StatusAccepted, good.Status, tc.name)
			require.Equal(t, fmt.Sprint("good-", i), good.ID)
			require.Empty(t, good.Reason)
		}
		require.Equal(t, "e", res.Results[2*3].ID, "a rejected event's valid id is echoed")
		require.Empty(t, res.Results[2*7].ID, "an invalid id is not")
		require.EqualValues(t, len(badEvents), b.stored(t))
		require.EqualValues(t, len(badEvents), b.counted(ingest.StatusAccepted, ""))
	})
}

func TestContentTypesAndShapes(t *testing.T) {
	t.Parallel()
	one, two := event("one"), batchOf(event("a"), event("b"))
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		for _, tc := range []struct {
			name        string
			contentType string
			body        string
			accepted    int
		}{
			{"cloudevent", ingest.ContentTypeEvent, one, 1},
			{"cloudevent with charset", ingest.ContentTypeEvent + "; charset=utf-8", event("one-cs"), 1},
			{"batch", ingest.ContentTypeBatch, two, 2},
			{"json object", ingest.ContentTypeJSON, event("j1"), 1},
			{"json array", ingest.ContentTypeJSON, batchOf(event("j2"), event("j3"), event("j4")), 3},
			{"no content type reads as json", "", event("n1"), 1},
			{"whitespace around", ingest.ContentTypeBatch, " \n" + batchOf(event("w1")) + "\n ", 1},
			{"one-event batch", ingest.ContentTypeBatch, batchOf(event("b1")), 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := b.accept(t, tc.contentType, tc.body)
				require.Equal(t, tc.accepted, res.Accepted)
				require.Len(t, res.Results, tc.accepted)
			})
		}
		require.EqualValues(t, 11, b.stored(t))

		for _, tc := range []struct {
			name        string
			contentType string
			body        string
			kind        problem.Kind
		}{
			{"text/plain", "text/plain", one, problem.KindUnsupportedMedia},
			{"form", "application/x-www-form-urlencoded", "id=1", problem.KindUnsupportedMedia},
			{"garbage content type", "application/", one, problem.KindUnsupportedMedia},
			{"cloudevent given an array", ingest.ContentTypeEvent, two, problem.KindInvalid},
			{"batch given an object", ingest.ContentTypeBatch, one, problem.KindInvalid},
			{"json scalar", ingest.ContentTypeJSON, `"checkin"`, problem.KindInvalid},
			{"empty batch", ingest.ContentTypeBatch, `[]`, problem.KindInvalid},
			{"empty body", ingest.ContentTypeBatch, "  ", problem.KindBadRequest},
			{"not json", ingest.ContentTypeJSON, `{"id":`, problem.KindBadRequest},
			{"broken array", ingest.ContentTypeBatch, `[` + event("x") + `,`, problem.KindBadRequest},
			{"trailing garbage", ingest.ContentTypeEvent, one + `}`, problem.KindBadRequest},
			{"batch over the limit", ingest.ContentTypeBatch, numbered("over-", ingest.DefaultMaxBatch+1), problem.KindTooLarge},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b.refused(t, tc.contentType, tc.body, tc.kind)
			})
		}
		require.EqualValues(t, 11, b.stored(t), "refused requests published nothing")
		for kind, n := range map[problem.Kind]float64{problem.KindUnsupportedMedia: 3, problem.KindInvalid: 4,
			problem.KindBadRequest: 4, problem.KindTooLarge: 1} {
			require.Equal(t, n, b.metric("perk_ingest_requests_refused_total", map[string]string{"kind": string(kind)}), kind)
		}
	})
}

func TestBatchAtTheLimit(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env, func(o *ingest.Options) { o.MaxBatch, o.MaxEventBytes = 5, 300 })
		require.EqualValues(t, 1500, b.svc.MaxBodyBytes())
		res := b.accept(t, ingest.ContentTypeBatch, numbered("lim-", 5))
		require.Equal(t, 5, res.Accepted)
		b.refused(t, ingest.ContentTypeBatch, numbered("lim-", 6), problem.KindTooLarge)

		big := event("big", "data", map[string]any{"pad": strings.Repeat("x", 300)})
		res = b.accept(t, ingest.ContentTypeBatch, batchOf(big, event("small")))
		require.Equal(t, []ingest.Status{ingest.StatusRejected, ingest.StatusAccepted}, statuses(res))
		require.Equal(t, ingest.ReasonTooLarge, res.Results[0].Reason)
	})
}

func TestMaxBodyBytes(t *testing.T) {
	t.Parallel()
	require.EqualValues(t, ingest.MaxBodyCap, ingest.New(nil, ingest.Options{}).MaxBodyBytes(),
		"1000 × 64 KiB is capped")
	require.EqualValues(t, 10*1024, ingest.New(nil, ingest.Options{MaxBatch: 10, MaxEventBytes: 1024}).MaxBodyBytes())
}

func TestTime(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		b := setup(t, env)
		res := b.accept(t, ingest.ContentTypeBatch, batchOf(
			event("no-time", "time", nil),
			event("edge-late", "time", "2026-03-03T09:00:00Z"),          // exactly 7 days: still accepted
			event("too-late", "time", "2026-03-03T08:59:59.999Z"),       // a millisecond more
			event("edge-future", "time", "2026-03-10T09:05:00Z"),        // exactly the skew
			event("in-future", "time", "2026-03-10T09:05:00.001Z"),      // a millisecond more
			event("offset", "time", "2026-03-10T10:30:00.123456+02:00"), // converted to UTC
		))
		require.Equal(t, []ingest.Status{ingest.StatusAccepted, ingest.StatusAccepted, ingest.StatusRejected,
			ingest.StatusAccepted, ingest.StatusRejected, ingest.StatusAccepted}, statuses(res))
		require.Equal(t, ingest.ReasonTooLate, res.Results[2].Reason)
		require.Equal(t, ingest.ReasonInFuture, res.Results[4].Reason)

		times := map[string]time.Time{}
		for _, m := range b.readAll(t, 4) {
			ev := decode(t, m)
			require.Equal(t, start, ev.ReceivedAt)
			times[ev.ID] = ev.Time
		}
		require.Equal(t, start, times["no-time"], "an event without time happened when it was received")
		require.Equal(t, start.Add(-7*24*time.Hour), times["edge-late"])
		require.Equal(t, time.Date(2026, 3, 10, 8, 30, 0, 123456000, time.UTC), times["offset"])
		require.Equal(t, time.UTC, times["offset"].Location())

		// the limits follow the clock and the options
		b.clock.Advance(time.Hour)
		res = b.accept(t, ingest.ContentTypeBatch, batchOf(event("later-future", "time", "2026-03-10T09:05:00.001Z")))
		require.Equal(t, ingest.StatusAccepted, res.Results[0].Status)
	})
}

func TestLatenessOptions(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T, env *bustest.Env) {
		strict := setup(t, env, func(o *ingest.Options) { o.MaxLateness, o.MaxFutureSkew = time.Hour, time.Second })
		res := strict.accept(t, ingest.ContentTypeBatch, batchOf(
			event("hour", "time", "2026-03-10T08:00:00Z"),
			event("hour-and-a-bit", "time", "2026-03-10T07:59:59Z"),
			event("second", "time", "2026-03-10T09:00:01Z"),
			event("two-seconds", "time", "2026-03-10T09:00:02Z")))
		require.Equal(t, []ingest.Status{ingest.StatusAccepted, ingest.StatusRejected, ingest.StatusAccepted,
			ingest.StatusRejected}, statuses(res))

		open := ingest.New(strict.bus, ingest.Options{Clock: strict.clock, MaxLateness: -1, MaxFutureSkew: -1})
		res, err := open.Accept(strict.ctx, shop, ingest.ContentTypeBatch, []byte(batchOf(
			event("ancient", "time", "2001-01-01T00:00:00Z"), event("far", "time", "2099-01-01T00:00:00Z"))))
		require.NoError(t, err)
		require.Equal(t, 2, res.Accepted, "negative limits turn the checks off")
	})
}
