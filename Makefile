# Thin wrapper over CMake: `make`, `make test`, `make asan`, `make test-clang`, `make clean`.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all test asan test-asan clang test-clang clean
all:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDSC_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)

test-asan: asan
	cd build-asan && ctest --output-on-failure -j $(JOBS)

# The same Release build and tests with clang (CI keeps both compilers working).
clang:
	CC=clang cmake -S . -B build-clang -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build-clang -j $(JOBS)

test-clang: clang
	cd build-clang && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD) build-asan build-clang
