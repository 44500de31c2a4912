"""The volunteer screen: a local web page served by the gate daemon (live results, health, actions)."""
