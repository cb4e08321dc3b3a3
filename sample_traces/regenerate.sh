#!/bin/sh
# Regenerate the generated samples (run from this folder). Deterministic: the same bytes every time
# with the same exitreplay, numpy and zstd versions.
set -e
exitreplay synth idle -o svm-idle.v7.dat --isa svm --version 7 --vcpus 2 --seconds 0.2
exitreplay synth idle -o vmx-idle.v6.dat --isa vmx --version 6 --vcpus 2 --seconds 0.2
exitreplay synth netio -o svm-netio.v7zstd.dat --isa svm --version 7 --compression zstd --vcpus 2 --seconds 0.03
exitreplay synth netio -o vmx-netio.v6.dat --isa vmx --version 6 --vcpus 2 --seconds 0.02
exitreplay synth cpu -o svm-cpu.v6.dat --isa svm --version 6 --vcpus 4 --seconds 0.5
exitreplay synth cpu -o vmx-cpu.v7.dat --isa vmx --version 7 --vcpus 4 --seconds 0.5
exitreplay synth syscall-heavy -o svm-syscall-heavy.v7.dat --isa svm --version 7 --vcpus 2 --seconds 0.02
exitreplay synth syscall-heavy -o vmx-syscall-heavy.v7zstd.dat --isa vmx --version 7 --compression zstd --vcpus 2 --seconds 0.03
exitreplay synth nested -o svm-nested.v7.dat --isa svm --version 7 --vcpus 1 --seconds 0.02
exitreplay synth nested -o svm-nested-vls.v7.dat --isa svm --version 7 --vcpus 1 --seconds 0.02 --vls
exitreplay synth mixed -o svm-mixed.v7zstd.dat --isa svm --version 7 --compression zstd --vcpus 2 --seconds 0.05
exitreplay synth mixed -o vmx-mixed.v6.dat --isa vmx --version 6 --vcpus 2 --seconds 0.02
exitreplay synth syscall-heavy -o svm-syscall-heavy-linux4.19.v6.dat --isa svm --version 6 --vcpus 2 --seconds 0.01 --template linux-4.19
exitreplay synth nested -o svm-nested-linux4.19.v7zstd.dat --isa svm --version 7 --compression zstd --vcpus 1 --seconds 0.02 --template linux-4.19
