"""Tailor's offline side: read a purchase log, build the matrix, fit, evaluate, write an artifact, publish."""
