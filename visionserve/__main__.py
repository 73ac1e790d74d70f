from visionserve.cli import app

app()
