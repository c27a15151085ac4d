"""Generated protobuf and gRPC modules for Pravega's controller interface.

``controller.proto`` is the source; ``controller_pb2`` (messages) and ``controller_pb2_grpc``
(stubs and servicer base) are generated from it by ``tools/gen_proto.sh`` and must not be edited
by hand. Importing them requires the ``grpc`` extra (grpcio and protobuf).
"""
