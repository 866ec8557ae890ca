"""Results (检查检验): orderable tests, orders behind the payment gate, reports and their audited lookup."""
