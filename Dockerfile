# dsproc API / worker image (CPU). GPU workers: build with a CUDA base and run the `worker-gpu` profile.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY workers ./workers
COPY operators ./operators
COPY storage ./storage
COPY dsproc ./dsproc
RUN pip install --no-cache-dir .
RUN useradd --create-home dsproc
USER dsproc
EXPOSE 8000
CMD ["dsproc", "serve", "--host", "0.0.0.0", "--port", "8000"]
