"""One job per template: how a task version's samples flow through its operators."""
