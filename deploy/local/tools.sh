#!/usr/bin/env bash
# Client tools the tests use, from Debian's packages: kcat (a Kafka client we did not write),
# docker-compose (to validate docker-compose.yml without a Docker engine), curl and jq, and
# chromium with a font (the browser tests drive Debian's Chromium; Playwright downloads nothing).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
missing=()
command -v kcat >/dev/null || missing+=(kcat)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)  # the README's quickstart (tests/e2e/test_readme_quickstart.py)
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)  # javac: kafka.sh applies its ACLs with a Java program
command -v mvn >/dev/null || missing+=(maven)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)
[[ ${#missing[@]} -eq 0 ]] && exit 0
[[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; install them with apt-get as root"
say "installing ${missing[*]} from Debian's packages"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
