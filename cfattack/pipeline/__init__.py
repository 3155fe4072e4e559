"""One explanation end to end: the `Explainer` wiring invert -> attack -> attribute, and the
`Explanation` result it returns."""
