"""Networks: what is known about where a request comes from (IP reputation lists)."""
