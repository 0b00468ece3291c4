package httpapi

import "os"

var readFile = os.ReadFile
