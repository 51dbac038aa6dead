"""The condition language of switch routers: lexer, syntax tree, parser and evaluation."""
