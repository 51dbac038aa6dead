#!/usr/bin/env bash
# Packs what benchmarks/offline/run.sh needs on a machine that has Python 3.12 with torch,
# numpy and onnxruntime but no Java and no network (the GPU machine lent to some
# sessions): a Java runtime cut to the modules the broker uses (jlink), the broker's jars
# with the native libraries of other platforms removed (both xz-compressed, about 31 MB),
# the wheels that machine lacks and the trained digits models. Run from the repository
# root after `make install` and `make models`, with a JDK 17 and a broker started once
# (so that the jars are downloaded). Writes .dev/, which git ignores through
# .git/info/exclude.
#   bash benchmarks/offline/bundle.sh [PYTHON_VERSION]   # default 3.12
set -euo pipefail
py=${1:-3.12}
out=.dev
jdk=${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}
libs=${KAFKA_HOME:-${STREAMCOMPOSE_HOME:-$HOME/.streamcompose}/kafka-$(.venv/bin/python -c \
  'from streamcompose.kafka.broker_process import KAFKA_VERSION; print(KAFKA_VERSION)')}/libs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out/models" "$out/whl"
grep -qx "/$out/" .git/info/exclude 2>/dev/null || echo "/$out/" >> .git/info/exclude

echo "Java runtime from $jdk" >&2
"$jdk/bin/jlink" --add-modules java.base,java.logging,java.management,java.naming,\
java.security.jgss,java.security.sasl,java.sql,java.xml,jdk.unsupported,jdk.management,\
java.desktop --strip-debug --no-header-files --no-man-pages --output "$tmp/jre17n"
strip --strip-unneeded "$tmp/jre17n/lib/server/libjvm.so" "$tmp"/jre17n/lib/*.so
XZ_OPT=-9 tar cJf "$out/jre.tar.xz" -C "$tmp" jre17n

echo "Kafka jars from $libs" >&2
mkdir -p "$tmp/kafka/libs"
for jar in "$libs"/*.jar; do
  rm -rf "$tmp/x" && mkdir "$tmp/x" && (cd "$tmp/x" && unzip -q "$jar")
  find "$tmp/x" \( -name '*.so' -o -name '*.dll' -o -name '*.dylib' -o -name '*.jnilib' \) \
    ! -ipath '*linux*amd64*' ! -ipath '*linux/x86_64*' -delete
  (cd "$tmp/x" && zip -q -0 -r -X "$tmp/kafka/libs/$(basename "$jar")" .)  # xz packs better
done
XZ_OPT=-9 tar cJf "$out/kafka.tar.xz" -C "$tmp" kafka

echo "wheels for Python $py" >&2
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$out/whl" aiokafka==0.14.0 async-timeout mode-streaming \
  colorlog croniter pytz pytest pytest-asyncio pluggy iniconfig
cp topologies/models/digits_* topologies/models/moe_* "$out/models/"
du -sh "$out"
