"""Lists a gRPC server's services with Python's reflection client (grpcio-reflection),
which speaks only grpc.reflection.v1alpha, over mutual TLS.

    list_services.py HOST:PORT CA CERT KEY SERVER_NAME

Prints one service per line; then, for each, that its file descriptor resolves (the
client fetches it by symbol), so a listed service that cannot be described fails too.
"""

import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from google.protobuf.descriptor_pool import DescriptorPool


def main() -> int:
    target, ca, cert, key, server_name = sys.argv[1:6]
    with open(ca, "rb") as f:
        root = f.read()
    with open(cert, "rb") as f:
        chain = f.read()
    with open(key, "rb") as f:
        private = f.read()
    credentials = grpc.ssl_channel_credentials(root, private, chain)
    channel = grpc.secure_channel(
        target, credentials, options=[("grpc.ssl_target_name_override", server_name)]
    )
    grpc.channel_ready_future(channel).result(timeout=10)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    pool = DescriptorPool(database)
    for service in services:
        print(service)
        pool.FindServiceByName(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
