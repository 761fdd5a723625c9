"""The jobs domain: the ledger of generations and everything that moves them along."""
