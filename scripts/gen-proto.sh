#!/usr/bin/env bash
# Regenerates the Swift for proto/ into Sources/InfraSightPipelineProto and
# Sources/InfraSightContainers/Generated (committed, so a build never needs protoc or the
# generator plugins).
#
# Needs: protoc (apt-get install protobuf-compiler) and the two generator plugins, built
# from the packages the project depends on:
#   PROTOC_GEN_SWIFT=.../protoc-gen-swift             (apple/swift-protobuf 1.39.0)
#   PROTOC_GEN_GRPC_SWIFT=.../protoc-gen-grpc-swift-2 (grpc/grpc-swift-protobuf 2.4.1)
# e.g. in a scratch package depending on both:
#   swift build -c release --product protoc-gen-swift
#   swift build -c release --product protoc-gen-grpc-swift-2
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PROTOC_GEN_SWIFT:?set PROTOC_GEN_SWIFT to the protoc-gen-swift binary}"
: "${PROTOC_GEN_GRPC_SWIFT:?set PROTOC_GEN_GRPC_SWIFT to the protoc-gen-grpc-swift-2 binary}"
out=Sources/InfraSightPipelineProto
mkdir -p "$out"
protoc --proto_path=proto \
    --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" --swift_out="$out" --swift_opt=Visibility=Public \
    --plugin=protoc-gen-grpc-swift="$PROTOC_GEN_GRPC_SWIFT" --grpc-swift_out="$out" \
    --grpc-swift_opt=Visibility=Public,Server=true,Client=true \
    proto/infrasight/v1/pipeline.proto
echo "generated into $out"
# The part of containerd's API the enricher reads (client only, internal to its module).
out=Sources/InfraSightContainers/Generated
mkdir -p "$out"
protoc --proto_path=proto \
    --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" --swift_out="$out" \
    --plugin=protoc-gen-grpc-swift="$PROTOC_GEN_GRPC_SWIFT" --grpc-swift_out="$out" \
    --grpc-swift_opt=Server=false,Client=true \
    proto/containerd/services/containers/v1/containers.proto \
    proto/containerd/services/events/v1/events.proto proto/containerd/events/container.proto
echo "generated into $out"
