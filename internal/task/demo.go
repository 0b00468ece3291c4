package task

import "encoding/json"

// DemoSpecs returns the task definitions of the demo merchant, by key, ready to create and
// publish (config kind "task"):
//
//   - daily-checkin: a daily check-in (event type "checkin") worth 10 points, with a 50-point
//     bonus every 7 consecutive days, two make-up cards and one freeze per month;
//   - weekly-orders: three paid orders of at least 50.00 in a week (event type "order.paid",
//     data.amount >= 5000 in cents) earn 100 growth;
//   - monthly-spend: staged on the month's sum of data.amount of "order.paid": 50,000 → 50 points,
//     100,000 → 150 points.
//
// weekly-orders grants growth only: add {"type": "coupon", "template": "<key>"} to its stage once
// the coupon module is installed (a coupon reward is refused at publish without it).
func DemoSpecs() map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"daily-checkin": json.RawMessage(`{
			"kind": "daily",
			"trigger": {"event_types": ["checkin"]},
			"metric": {"type": "count"},
			"stages": [{"target": 1, "rewards": [{"type": "points", "amount": 10, "reason": "daily check-in"}]}],
			"streak": {"rewards": [{"day": 7, "rewards": [{"type": "points", "amount": 50, "reason": "7-day check-in streak"}]}],
				"cycle": true, "makeup_cards_per_month": 2, "freeze_per_month": 1},
			"title": {"zh-CN": "每日签到", "en": "Daily check-in"},
			"description": {"zh-CN": "每天签到得 10 积分，连续 7 天再得 50 积分", "en": "Check in every day for 10 points; 7 days in a row earn 50 more"},
			"order": 1
		}`),
		"weekly-orders": json.RawMessage(`{
			"kind": "weekly",
			"trigger": {"event_types": ["order.paid"], "filter": "event.data.amount >= 5000"},
			"metric": {"type": "count"},
			"stages": [{"target": 3, "rewards": [{"type": "growth", "amount": 100, "reason": "3 orders this week"}]}],
			"title": {"zh-CN": "每周下单 3 次", "en": "Three orders a week"},
			"description": {"zh-CN": "本周完成 3 笔满 50 元的订单，得 100 成长值", "en": "Pay 3 orders of 50.00 or more this week for 100 growth"},
			"order": 2
		}`),
		"monthly-spend": json.RawMessage(`{
			"kind": "staged",
			"period": "monthly",
			"trigger": {"event_types": ["order.paid"]},
			"metric": {"type": "sum", "field": "amount"},
			"stages": [
				{"target": 50000, "rewards": [{"type": "points", "amount": 50, "reason": "spent 500.00 this month"}]},
				{"target": 100000, "rewards": [{"type": "points", "amount": 150, "reason": "spent 1000.00 this month"}], "after": 0}
			],
			"title": {"zh-CN": "月度消费奖励", "en": "Monthly spend rewards"},
			"description": {"zh-CN": "本月消费满 500 元得 50 积分，满 1000 元再得 150 积分", "en": "Spend 500.00 this month for 50 points, 1000.00 for 150 more"},
			"order": 3
		}`),
	}
}
