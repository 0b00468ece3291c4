package ids

import "encoding/base32"

var encoding = base32.StdEncoding.WithPadding(base32.NoPadding)
