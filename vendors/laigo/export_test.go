package laigo

// The parsers are exported to the tests only, for fuzzing.
var (
	ParseJobID  = parseJobID
	ParseResult = parseResult
)
