# The API and the watcher (one image; compose.yaml runs it twice). Installs the
# package (pyproject.toml: runtime dependencies only, not the test tools).
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir .
EXPOSE 5000
CMD ["bookstore-server", "--host", "0.0.0.0", "--port", "5000"]
