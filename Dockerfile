# One image for every patientflow component; the compose file picks the component with its command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# A CJK font for printed reports and daily bills (kit/pdf.py).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY kit ./kit
COPY services ./services
COPY gateway ./gateway
COPY patientflow ./patientflow
RUN pip install . && useradd --uid 10001 --no-create-home patientflow
USER patientflow

EXPOSE 8000
# The component to run is the command's argument, e.g. `patientflow serve registration`.
ENTRYPOINT ["patientflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["gateway"]
