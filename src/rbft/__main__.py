from rbft.cli import app

app(prog_name="rbft")
