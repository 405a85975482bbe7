"""The run's records: rollout ledger, prompt DB, summary, reward curve and the statistics behind them."""
