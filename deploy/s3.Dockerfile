# The example S3-compatible server of the compose walkthrough (profile `objects`): one static
# binary (bench/src/bin/bench-s3.rs, serving s3s-fs) and an empty /buckets. Built by
# deploy/build-image.sh from a small context, so no base image is pulled. For trying
# fanfold's object storage, not for keeping data.
FROM scratch

COPY bin/bench-s3 /usr/local/bin/
COPY --chown=65532:65532 buckets/ /buckets/

ENV PATH=/usr/local/bin
USER 65532:65532
EXPOSE 9000
CMD ["bench-s3", "--root", "/buckets", "--listen", "0.0.0.0:9000"]
