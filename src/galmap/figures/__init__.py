"""The paper's figures, drawn from the stages' output files. Writes ``results/figures/<name>.{pdf,png}``."""
