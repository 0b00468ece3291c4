package qualify

import (
	"slices"
	"strconv"
	"strings"
)

// DefaultCurrency is the currency of a spec or cart that names none.
const DefaultCurrency = "CNY"

// currency is an ISO 4217 code with its minor digits and the symbol messages use.
type currency struct {
	code   string
	digits int
	symbol string
}

// currencies are the ISO 4217 codes perk knows.
var currencies = map[string]*currency{}

func init() {
	for _, c := range []currency{
		{"CNY", 2, "¥"}, {"HKD", 2, "HK$"}, {"MOP", 2, "MOP$"}, {"TWD", 2, "NT$"},
		{"USD", 2, "$"}, {"EUR", 2, "€"}, {"GBP", 2, "£"}, {"JPY", 0, "JP¥"}, {"KRW", 0, "₩"},
		{"SGD", 2, "S$"}, {"AUD", 2, "A$"}, {"CAD", 2, "CA$"}, {"NZD", 2, "NZ$"}, {"CHF", 2, "CHF "},
		{"SEK", 2, "SEK "}, {"NOK", 2, "NOK "}, {"DKK", 2, "DKK "}, {"INR", 2, "₹"}, {"THB", 2, "฿"},
		{"MYR", 2, "RM"}, {"IDR", 2, "Rp"}, {"PHP", 2, "₱"}, {"VND", 0, "₫"}, {"RUB", 2, "₽"},
		{"BRL", 2, "R$"}, {"MXN", 2, "MX$"}, {"ZAR", 2, "R"}, {"AED", 2, "AED "}, {"SAR", 2, "SAR "},
		{"KWD", 3, "KWD "}, {"BHD", 3, "BHD "},
	} {
		currencies[c.code] = &c
	}
}

// KnownCurrency reports whether code is an ISO 4217 code perk knows.
func KnownCurrency(code string) bool {
	_, ok := currencies[code]
	return ok
}

// MinorDigits is the number of minor-unit digits of a known currency (2 for CNY, 0 for JPY); -1
// for an unknown code.
func MinorDigits(code string) int {
	if c, ok := currencies[code]; ok {
		return c.digits
	}
	return -1
}

// knownCodes lists the known codes, for error messages.
func knownCodes() string {
	codes := make([]string, 0, len(currencies))
	for c := range currencies {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return strings.Join(codes, ", ")
}

// currencyOf returns the currency of code, or a stand-in with two digits and the code as symbol.
func currencyOf(code string) *currency {
	if code == "" {
		code = DefaultCurrency
	}
	if c, ok := currencies[code]; ok {
		return c
	}
	return &currency{code: code, digits: 2, symbol: code + " "}
}

// FormatMoney formats an amount in minor units with the currency's symbol and digits:
// FormatMoney("CNY", 1200) is "¥12.00".
func FormatMoney(code string, amount int64) string {
	return string(appendMoney(nil, currencyOf(code), amount))
}

var pow10 = [...]int64{1, 10, 100, 1000}

func appendMoney(b []byte, c *currency, v int64) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	b = append(b, c.symbol...)
	if c.digits == 0 {
		return strconv.AppendInt(b, v, 10)
	}
	p := pow10[c.digits]
	b = strconv.AppendInt(b, v/p, 10)
	b = append(b, '.')
	frac := v % p
	for q := p / 10; q > 1 && frac < q; q /= 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, frac, 10)
}

// appendPercent formats basis points as a percentage: 1500 is "15%", 1250 "12.5%", 5 "0.05%".
func appendPercent(b []byte, bp int64) []byte {
	b = strconv.AppendInt(b, bp/100, 10)
	if frac := bp % 100; frac != 0 {
		b = append(b, '.')
		if frac < 10 {
			b = append(b, '0')
		}
		if frac%10 == 0 {
			frac /= 10
		}
		b = strconv.AppendInt(b, frac, 10)
	}
	return append(b, '%')
}
