"""Presentation: the console (rich), exports and the HTML report. Nothing here feeds back into measurement."""
