package qualify

// MaxSearchNodes is the stack search's node budget.
const MaxSearchNodes = maxSearchNodes

// EvaluateNodes runs Evaluate with a node budget for the stack search (0: the default) and also
// returns the most nodes one stack search visited.
func EvaluateNodes(in Input, budget int) (Result, int) {
	e := getEvaluator(&in)
	defer e.release()
	e.budget = budget
	res := e.run()
	return res, e.nodes
}

// EvaluateFresh runs Evaluate on a new evaluator, never pooled.
func EvaluateFresh(in Input) Result {
	var e evaluator
	e.setup(&in)
	return e.run()
}
