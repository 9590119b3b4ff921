from invoiced_keap.cli import app

app()
