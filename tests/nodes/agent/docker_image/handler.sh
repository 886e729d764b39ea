#!/bin/sh
# One Infernet-style request on stdin/stdout: POST /service_output.
# Answers {"by": $NAME, "request": <the request body>}; a body that asks to "die"
# kills the whole container mid-request, as a crashing model server would.
read -r method path _
length=0
while IFS= read -r line; do
    line=$(printf '%s' "$line" | tr -d '\r')
    [ -z "$line" ] && break
    case "$line" in
        [Cc]ontent-[Ll]ength:*) length=$(echo "${line#*:}" | tr -d ' ') ;;
    esac
done
body=$(head -c "$length")

reply() {
    printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
        "$1" "${#2}" "$2"
}

if [ "$method" != "POST" ] || [ "$path" != "/service_output" ]; then
    reply "404 Not Found" '{"error":"not found"}'
    exit 0
fi
case "$body" in
    *'"die"'*) kill -9 1; exit 1 ;;
    *'"fail"'*) reply "500 Internal Server Error" '{"error":"model exploded"}'; exit 0 ;;
esac
reply "200 OK" "{\"by\":\"$NAME\",\"request\":$body}"
