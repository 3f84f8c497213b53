"""What every HTTP request goes through, for the JSON API and the pages alike: routing (one registry
for the router and the OpenAPI document), problem+json, credentials, request limits, the access
log, request metrics and the HTML answer."""
